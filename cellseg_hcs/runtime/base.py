"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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
    probabilities (sigmoid already applied). It is made once per process and reused.
    """

    name: str = ""

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Can this backend run on this machine? Never raises."""

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of tiles (N, C, H, W) -> (N, K, H, W)."""

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """``{"backend", "device", "precision", "version"}`` for logs and run manifests."""
