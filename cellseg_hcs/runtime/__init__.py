"""Inference: one backend interface, a registry of backends, and tiled prediction."""

from .base import Availability, Backend, default_cpu_threads
from .registry import (
    AUTO_CPU_CANDIDATES,
    AUTO_GPU_ORDER,
    BACKENDS,
    Runtime,
    backend_report,
    choose_backend,
    fastest_cpu_backend,
)
from .tiling import TileGrid, tile_starts

__all__ = [
    "AUTO_CPU_CANDIDATES",
    "AUTO_GPU_ORDER",
    "BACKENDS",
    "Availability",
    "Backend",
    "Runtime",
    "TileGrid",
    "backend_report",
    "choose_backend",
    "default_cpu_threads",
    "fastest_cpu_backend",
    "tile_starts",
]
