"""The one interface every inference backend implements."""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here, and if not, the one-line reason."""

    ok: bool
    reason: str = ""
    version: str = ""
    devices: tuple[str, ...] = ()


class Backend(ABC):
    """Runs a model's network on batches of tiles.

    A backend takes NCHW float32 tiles (normalized images) and returns NCHW float32
    probabilities (sigmoid already applied). It is made once per process with
    :meth:`load` and reused; every backend is made the same way, so the registry needs no
    per-backend code.
    """

    name: str = ""

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Can this backend run on this machine? Never raises."""

    @classmethod
    @abstractmethod
    def load(
        cls,
        model: Any,
        device: str | None = None,
        *,
        tile_size: int = 512,
        batch_size: int = 4,
        **options: Any,
    ) -> Backend:
        """This backend running ``model``'s network on ``device`` (None: the backend's choice).

        ``tile_size`` and ``batch_size`` are the largest tiles and batches it will be given
        (compiling backends build for them); ``options`` are the backend's own settings.

        Raises :class:`~cellseg_hcs.errors.BackendUnavailable` with one sentence when it
        cannot run the model there.
        """

    @classmethod
    def default_device(cls) -> str:
        """The device :meth:`load` picks when none is asked for."""
        return "cpu"

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of tiles (N, C, H, W) -> (N, K, H, W)."""

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """``{"backend", "device", "precision", "version"}`` for logs and run manifests."""


def default_cpu_threads() -> int:
    """Threads for CPU inference: the CPU cores this process may use (affinity-aware).

    ``$CELLSEG_HCS_THREADS`` overrides it (e.g. several worker processes on one machine).
    """
    explicit = os.environ.get("CELLSEG_HCS_THREADS", "")
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def no_cuda_gpu_here() -> bool:
    """True when this machine certainly has no NVIDIA GPU (no device nodes), without torch."""
    return os.name == "posix" and not glob.glob("/dev/nvidia[0-9]*")
