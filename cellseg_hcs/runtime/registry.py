"""Backends by name, the ``auto`` choice, and the tiled runtime a model predicts through."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import BackendUnavailable, SettingError
from .base import Availability, Backend
from .tiling import TileGrid
from .torch_backend import TorchBackend

log = logging.getLogger(__name__)

BACKENDS: dict[str, type[Backend]] = {"torch": TorchBackend}


def backend_report() -> dict[str, Availability]:
    """Availability of every registered backend (for ``cellseg-hcs info``)."""
    return {name: cls.availability() for name, cls in BACKENDS.items()}


def choose_backend(backend: str = "auto", device: str | None = None) -> tuple[str, str]:
    """The backend to use and why: ``(name, reason)``."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise SettingError(
                f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}."
            )
        availability = BACKENDS[backend].availability()
        if not availability.ok:
            raise BackendUnavailable(f"backend {backend!r} cannot run here: {availability.reason}")
        return backend, "asked for"
    return "torch", "torch is the only backend registered"


def _make_backend(model, name: str, device: str | None, **options) -> Backend:
    cls = BACKENDS[name]
    if name == "torch":
        return cls(model.network, device=device, **options)
    return cls(model, device=device, **options)


class Runtime:
    """A model's network behind a backend, with tiling and batching.

    Parameters
    ----------
    model:
        The :class:`~cellseg_hcs.model.Model`.
    backend, device:
        Backend name (or ``auto``) and device (``cpu``, ``cuda:0``; None = backend's choice).
    tile_size, overlap, batch_size:
        Fields larger than ``tile_size`` are cut into tiles overlapping by ``overlap``
        pixels and run ``batch_size`` tiles at a time.
    """

    def __init__(self, model, backend: str = "auto", device: str | None = None, *,
                 tile_size: int = 512, overlap: int = 64, batch_size: int = 4,
                 **backend_options) -> None:
        self.name, self.reason = choose_backend(backend, device)
        self.backend = _make_backend(model, self.name, device, **backend_options)
        self.tile_size = tile_size
        self.overlap = overlap
        self.batch_size = batch_size
        self.channels = len(model.info.outputs)
        log.info("backend %s (%s): %s", self.name, self.reason, self.backend.describe())

    def describe(self) -> dict[str, str]:
        return {**self.backend.describe(), "reason": self.reason}

    def predict(self, field: np.ndarray) -> np.ndarray:
        """Whole-field probability maps (K, H, W) for one normalized CYX field."""
        return self.predict_many([field])[0]

    def predict_many(self, fields: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Maps for several fields, batching tiles of same-shaped tiles across fields."""
        grids = [TileGrid(f.shape, self.tile_size, self.overlap) for f in fields]
        blenders = [grid.blender(self.channels) for grid in grids]
        queue: dict[tuple, list] = {}
        for index, (field, grid) in enumerate(zip(fields, grids)):
            for tile, pixels in zip(grid.tiles, grid.cut(field)):
                key = pixels.shape
                queue.setdefault(key, []).append((index, tile, pixels))
                if len(queue[key]) == self.batch_size:
                    self._run(queue.pop(key), blenders)
        for pending in queue.values():
            self._run(pending, blenders)
        return [blender.result() for blender in blenders]

    def _run(self, items: list, blenders: list) -> None:
        batch = np.stack([pixels for _, _, pixels in items])
        predictions = self.backend.predict(batch)
        for (index, tile, _), prediction in zip(items, predictions):
            blenders[index].add(tile, prediction)
