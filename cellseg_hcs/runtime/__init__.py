"""Inference: one backend interface, a registry of backends, and tiled prediction."""

from .base import Availability, Backend
from .registry import BACKENDS, Runtime, backend_report, choose_backend
from .tiling import TileGrid, tile_starts

__all__ = [
    "BACKENDS",
    "Availability",
    "Backend",
    "Runtime",
    "TileGrid",
    "backend_report",
    "choose_backend",
    "tile_starts",
]
