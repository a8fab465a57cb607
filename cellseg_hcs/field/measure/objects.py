"""The objects of one field, arranged once for every measurement of them.

Every group measures all objects of a field at once. What they share is computed here on
first use and kept: the object pixels in label order (one stable sort), each object's
start and area in that order, its bounding box, its pixel coordinates, each channel's
values in that order. A reduction over objects is then one ``np.add.reduceat`` over a
contiguous array, not a Python loop over objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi


class FieldObjects:
    """Labels ``1..N`` (every number present), the channels on CellProfiler's scale.

    Parameters
    ----------
    labels:
        2-D label image, 0 = background, objects numbered ``1..N`` with none missing.
    channels:
        ``{name: plane}`` as float64 on CellProfiler's 0..1 scale.
    scales:
        ``{name: the image's scale}`` as CellProfiler records it when it loads an image
        (65535 for a 16-bit image, 255 for an 8-bit one, None for a float image).
    integers:
        ``{name: the raw integer plane}`` for channels that came as integers (the channel
        is that over its scale); some groups use them as table indices.
    """

    def __init__(
        self,
        labels: np.ndarray,
        channels: Mapping[str, np.ndarray],
        scales: Mapping[str, float | None] | None = None,
        integers: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.labels = labels
        self.channels = dict(channels)
        self.scales = {name: (scales or {}).get(name) for name in self.channels}
        self.integers = {name: (integers or {}).get(name) for name in self.channels}
        self.count = int(labels.max()) if labels.size else 0
        self.shape = labels.shape
        self._cache: dict = {}

    # ------------------------------------------------------------------ pixels in label order
    @cached_property
    def pixels(self) -> np.ndarray:
        """Flat indices of the object pixels, by label, in raster order within a label."""
        flat = np.flatnonzero(self.labels)
        values = self.labels.ravel()[flat]
        # A stable sort of small integers is a radix sort in numpy: linear time.
        key = values.astype(np.uint16) if self.count < 2**16 else values
        return flat[np.argsort(key, kind="stable")]

    @cached_property
    def pixel_labels(self) -> np.ndarray:
        """The label of each pixel of :attr:`pixels`."""
        return self.labels.ravel()[self.pixels]

    @cached_property
    def areas(self) -> np.ndarray:
        """Pixels per object (int64)."""
        return np.bincount(self.pixel_labels, minlength=self.count + 1)[1:]

    @cached_property
    def starts(self) -> np.ndarray:
        """Where each object's pixels start in :attr:`pixels`."""
        return np.concatenate(([0], np.cumsum(self.areas)[:-1])).astype(np.intp)

    @cached_property
    def rows(self) -> np.ndarray:
        """Row of each pixel of :attr:`pixels`."""
        return self.pixels // self.shape[1]

    @cached_property
    def cols(self) -> np.ndarray:
        """Column of each pixel of :attr:`pixels`."""
        return self.pixels % self.shape[1]

    @cached_property
    def boxes(self) -> np.ndarray:
        """Bounding boxes, ``(N, 4)``: min row, min column, max row + 1, max column + 1."""
        out = np.zeros((self.count, 4), np.intp)
        for index, box in enumerate(ndi.find_objects(self.labels, self.count)):
            out[index] = box[0].start, box[1].start, box[0].stop, box[1].stop
        return out

    def values(self, name: str) -> np.ndarray:
        """A channel's values at :attr:`pixels`."""
        key = ("values", name)
        if key not in self._cache:
            self._cache[key] = self.channels[name].ravel()[self.pixels]
        return self._cache[key]

    # ------------------------------------------------------------------ reductions
    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-object sums of values given in :attr:`pixels` order."""
        return np.add.reduceat(values, self.starts) if self.count else np.zeros(0)

    def mean(self, values: np.ndarray) -> np.ndarray:
        return self.sum(values) / self.areas

    def minimum(self, values: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(values, self.starts) if self.count else np.zeros(0)

    def maximum(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.starts) if self.count else np.zeros(0)

    def spread(self, per_object: np.ndarray) -> np.ndarray:
        """One value per object repeated over its pixels (in :attr:`pixels` order)."""
        return np.repeat(per_object, self.areas, axis=0)

    def cached(self, key, make):
        """``make()`` once per field: results that several groups share."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def segment_sums(values: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Sums of ``values`` grouped by ``owners`` (0..count-1), owners sorted ascending."""
    out = np.zeros((count,) + values.shape[1:], dtype=values.dtype)
    if len(owners):
        present, starts = np.unique(owners, return_index=True)
        out[present] = np.add.reduceat(values, starts, axis=0)
    return out
