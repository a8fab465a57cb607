"""The objects of one field, arranged once for every measurement of them.

Every group measures all objects of a field at once. What they share is computed here on
first use and kept: the object pixels in label order (one stable sort), each object's
start and area in that order, its bounding box, its pixel coordinates, each channel's
values in that order. A reduction over objects is then one ``np.add.reduceat`` over a
contiguous array, not a Python loop over objects.

Groups may be measured in several threads at once (``measure_objects(threads=...)``): each
shared result is then made by the first thread that asks for it while the others wait for
it (one lock per result), never twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from . import compiled


class shared_property:
    """A property made on first use and kept, as ``functools.cached_property``, by one
    thread only (:meth:`FieldObjects.cached`): groups measured in threads at once ask for
    the same arrays."""

    def __init__(self, method: Callable[[Any], Any]) -> None:
        self.method = method
        self.name = method.__name__
        self.__doc__ = method.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.cached(("property", self.name), lambda: self.method(instance))
        instance.__dict__[self.name] = value  # later reads skip the descriptor
        return value


def present_numbers(labels: np.ndarray) -> np.ndarray:
    """The object numbers (above 0) that ``labels`` holds, ascending."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    table = labels.dtype.kind == "u" or (labels.dtype.kind == "i" and labels.min() >= 0)
    if table and 0 < top <= max(labels.size, 2**16):
        # A table of the numbers present: linear, where np.unique sorts or hashes.
        return np.flatnonzero(np.bincount(labels.ravel())[1:]) + 1
    ids = np.unique(labels)
    return ids[ids > 0]


def numbered(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered ``1..N`` in the order of their numbers (gaps closed), as int32."""
    ids = present_numbers(labels)
    if ids.size and ids[-1] != ids.size:
        lookup = np.zeros(int(ids[-1]) + 1, dtype=np.int32)
        lookup[ids] = np.arange(1, ids.size + 1)
        return lookup[labels]
    return labels.astype(np.int32, copy=False)


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
    images:
        A dict kept by the caller across object sets measured on the same channels of one
        field (nuclei, cells, cytoplasm): what depends on the images alone (granularity's
        reconstructions, Costes' thresholds) is computed for the first set only.
    """

    def __init__(
        self,
        labels: np.ndarray,
        channels: Mapping[str, np.ndarray],
        scales: Mapping[str, float | None] | None = None,
        integers: Mapping[str, np.ndarray] | None = None,
        images: dict | None = None,
    ) -> None:
        self.labels = labels
        self.channels = dict(channels)
        self.scales = {name: (scales or {}).get(name) for name in self.channels}
        self.integers = {name: (integers or {}).get(name) for name in self.channels}
        self.images = {} if images is None else images
        self.count = int(labels.max()) if labels.size else 0
        self.shape = labels.shape
        self._cache: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ pixels in label order
    @shared_property
    def pixels(self) -> np.ndarray:
        """Flat indices of the object pixels, by label, in raster order within a label."""
        flat = np.flatnonzero(self.labels)
        values = self.labels.ravel()[flat]
        # A stable sort of small integers is a radix sort in numpy: linear time.
        key = values.astype(np.uint16) if self.count < 2**16 else values
        return flat[np.argsort(key, kind="stable")]

    @shared_property
    def pixel_labels(self) -> np.ndarray:
        """The label of each pixel of :attr:`pixels`."""
        return self.labels.ravel()[self.pixels]

    @shared_property
    def areas(self) -> np.ndarray:
        """Pixels per object (int64)."""
        return np.bincount(self.pixel_labels, minlength=self.count + 1)[1:]

    @shared_property
    def starts(self) -> np.ndarray:
        """Where each object's pixels start in :attr:`pixels`."""
        return np.concatenate(([0], np.cumsum(self.areas)[:-1])).astype(np.intp)

    @shared_property
    def rows(self) -> np.ndarray:
        """Row of each pixel of :attr:`pixels`."""
        return self.pixels // self.shape[1]

    @shared_property
    def cols(self) -> np.ndarray:
        """Column of each pixel of :attr:`pixels`."""
        return self.pixels % self.shape[1]

    @shared_property
    def row_ends(self) -> np.ndarray:
        """Which of :attr:`pixels` are the first or last of their object in their row."""
        key = self.pixel_labels.astype(np.int64) * self.shape[0] + self.rows
        change = key[1:] != key[:-1]
        return np.concatenate(([True], change)) | np.concatenate((change, [True]))

    @shared_property
    def hulls(self) -> tuple[np.ndarray, np.ndarray]:
        """centrosome's convex hulls of the pixel centres: ``(label, row, column)`` rows by
        label, counter-clockwise, and the number of points of each (the hull of an object's
        row ends, which hold every extreme point)."""
        from centrosome.cpmorphology import convex_hull_ijv

        ends = self.row_ends
        points = np.column_stack([self.rows[ends], self.cols[ends], self.pixel_labels[ends]])
        return convex_hull_ijv(points, np.arange(1, self.count + 1))

    @shared_property
    def boxes(self) -> np.ndarray:
        """Bounding boxes, ``(N, 4)``: min row, min column, max row + 1, max column + 1."""
        out = np.zeros((self.count, 4), np.intp)
        if self.count:  # every number has pixels: the extremes of its pixels' coordinates
            out[:, 0], out[:, 1] = self.minimum(self.rows), self.minimum(self.cols)
            out[:, 2], out[:, 3] = self.maximum(self.rows) + 1, self.maximum(self.cols) + 1
        return out

    def values(self, name: str) -> np.ndarray:
        """A channel's values at :attr:`pixels`."""
        return self.cached(("values", name), lambda: self.channels[name].ravel()[self.pixels])

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
        return self._kept(self._cache, key, make)

    def of_images(self, key, make):
        """``make()`` once per field and channels, whatever the objects (see ``images``).
        Its locks are this object's: the object sets sharing an ``images`` dict are
        measured one after another, each with its groups in threads."""
        return self._kept(self.images, key, make)

    def _kept(self, store: dict, key, make):
        """``store[key]``, made by ``make()`` if missing; with threads, by the first that
        asks while the others wait. ``make`` may ask for other keys (never its own)."""
        try:
            return store[key]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault((id(store), key), threading.Lock())
        with lock:
            if key not in store:
                store[key] = make()
        return store[key]


def segment_sums(values: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Sums of ``values`` grouped by ``owners`` (0..count-1), owners sorted ascending."""
    out = np.zeros((count,) + values.shape[1:], dtype=values.dtype)
    if len(owners):
        present, starts = np.unique(owners, return_index=True)
        out[present] = np.add.reduceat(values, starts, axis=0)
    return out


class Mosaic:
    """Every object's box (grown by ``pad`` background pixels on each side) side by side in
    one image, so a whole-image operation (a distance transform, a propagation) runs on all
    objects at once without any two of them meeting.

    ``image``: True on object pixels; ``where``: the mosaic's flat index of each of
    ``objects.pixels``; ``origins``: ``(N, 2)`` mosaic row and column of each box's corner
    (the image pixel ``(top, left)`` of the object's box).
    """

    WIDTH = 2048

    def __init__(self, objects: FieldObjects, pad: int = 1) -> None:
        heights = objects.boxes[:, 2] - objects.boxes[:, 0] + 2 * pad
        widths = objects.boxes[:, 3] - objects.boxes[:, 1] + 2 * pad
        width = max(self.WIDTH, int(widths.max()) if objects.count else 0)
        origins = np.zeros((objects.count, 2), np.int64)
        row = col = shelf = 0
        for index in range(objects.count):  # shelves of boxes, left to right
            if col + widths[index] > width:
                row, col, shelf = row + shelf, 0, 0
            origins[index] = row + pad, col + pad
            col += widths[index]
            shelf = max(shelf, heights[index])
        self.shape = (row + shelf, width)
        self.origins = origins
        image = np.zeros(self.shape, bool)
        for index, (top, left, bottom, right) in enumerate(objects.boxes):
            r, c = origins[index]
            image[r : r + bottom - top, c : c + right - left] = (
                objects.labels[top:bottom, left:right] == index + 1
            )
        self.image = image
        owner = objects.pixel_labels - 1
        rows = objects.rows - objects.boxes[owner, 0] + origins[owner, 0]
        cols = objects.cols - objects.boxes[owner, 1] + origins[owner, 1]
        self.where = rows * width + cols


def distances_to_edge(objects: FieldObjects, image_border_is_edge: bool) -> np.ndarray:
    """Each object pixel's distance to the nearest pixel not of its object (in
    :attr:`FieldObjects.pixels` order).

    ``image_border_is_edge``: the object's box is padded with background, as
    MeasureObjectSizeShape pads its crops; else the image ends where it ends, as centrosome's
    distance_to_edge (MeasureObjectIntensityDistribution). The nearest pixel not of the
    object is always in the box grown by a pixel, so one distance transform of the boxes
    side by side (:class:`Mosaic`) gives it for all objects; objects on the image border,
    where the two differ, are redone one by one.
    """

    def padded() -> np.ndarray:
        mosaic = Mosaic(objects)
        if compiled.AVAILABLE:  # the same exact distances, compiled
            squared = compiled.squared_distances(mosaic.image).ravel()[mosaic.where]
            return np.sqrt(squared)
        return ndi.distance_transform_edt(mosaic.image).ravel()[mosaic.where]

    def make() -> np.ndarray:
        out = objects.cached(("distances to edge", True), padded)
        if image_border_is_edge:
            return out
        out = out.copy()
        height, width = objects.shape
        boxes = objects.boxes
        on_border = (boxes[:, 0] == 0) | (boxes[:, 1] == 0)
        on_border |= (boxes[:, 2] == height) | (boxes[:, 3] == width)
        for index in np.flatnonzero(on_border):
            top, left, bottom, right = boxes[index]
            top, left = max(top - 1, 0), max(left - 1, 0)
            bottom, right = min(bottom + 1, height), min(right + 1, width)
            box = objects.labels[top:bottom, left:right] == index + 1
            start = objects.starts[index]
            out[start : start + objects.areas[index]] = ndi.distance_transform_edt(box)[box]
        return out

    if image_border_is_edge:
        return objects.cached(("distances to edge", True), padded)
    return objects.cached(("distances to edge", False), make)


DIRECTIONS_8 = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def neighbours_8(objects: FieldObjects) -> np.ndarray:
    """``(8, pixels)``: for each of :attr:`FieldObjects.pixels` and each direction of
    :data:`DIRECTIONS_8`, the index (in that order) of the neighbour of the same object,
    -1 where the neighbour is outside the image or not of the object."""

    def make() -> np.ndarray:
        position, padded, stride = _padded_positions(objects)
        out = np.empty((8, objects.pixels.size), np.int64)
        own = objects.pixel_labels
        for index, (dy, dx) in enumerate(DIRECTIONS_8):
            found = position[padded + (dy * stride + dx)]
            same = found >= 0
            same[same] = own[found[same]] == own[same]
            out[index] = np.where(same, found, -1)
        return out

    return objects.cached("neighbours 8", make)


def _padded_positions(objects: FieldObjects) -> tuple[np.ndarray, np.ndarray, int]:
    """The image padded by a pixel, flat: each place's index in :attr:`FieldObjects.pixels`
    (-1 where no object is; int32 where it fits), each pixel's place, and the row stride. No
    neighbour of an object pixel falls outside it."""
    height, width = objects.shape
    stride = width + 2
    kind = np.int32 if objects.pixels.size < 2**31 else np.int64
    position = np.full((height + 2) * stride, -1, kind)
    places = (objects.rows + 1) * stride + objects.cols + 1
    position[places] = np.arange(objects.pixels.size, dtype=kind)
    return position, places, stride


def geodesic_distances(objects: FieldObjects, seeds: np.ndarray) -> np.ndarray:
    """Each object pixel's distance within its object from the object's seed pixel, over
    8-connected steps of 1 and sqrt(2); -1 where no path reaches.

    centrosome's ``propagate`` on a flat image (CellProfiler's distance from an object's
    centre) is Dijkstra's algorithm with these steps; this relaxes all objects' fronts
    until nothing changes (compiled, :func:`.compiled.propagate`; without numba, whole
    fronts at once in numpy), which reaches the same numbers: each pixel's distance is the
    least over its neighbours of their distance plus the step, either way, and with
    positive steps that has one solution.

    ``seeds``: one index into :attr:`FieldObjects.pixels` per object.
    """
    steps = np.array([np.sqrt(dy * dy + dx * dx) for dy, dx in DIRECTIONS_8])
    distance = np.full(objects.pixels.size, np.inf)
    if compiled.AVAILABLE:  # the same fixed point, one pixel at a time
        position, places, stride = _padded_positions(objects)
        offsets = np.array([dy * stride + dx for dy, dx in DIRECTIONS_8], np.int64)
        owner = objects.pixel_labels
        seeds = np.asarray(seeds, np.int64)
        compiled.propagate(position, places, owner, offsets, steps, seeds, distance)
        distance[np.isinf(distance)] = -1.0
        return distance
    table = neighbours_8(objects)
    distance[seeds] = 0.0
    front = np.asarray(seeds, np.int64)
    last_seen = np.zeros(objects.pixels.size, np.int64)
    while front.size:
        reached = []
        for direction in range(8):
            neighbour = table[direction, front]
            useful = neighbour >= 0
            candidate = distance[front[useful]] + steps[direction]
            neighbour = neighbour[useful]
            better = candidate < distance[neighbour]
            if better.any():
                np.minimum.at(distance, neighbour[better], candidate[better])
                reached.append(neighbour[better])
        front = np.concatenate(reached) if reached else np.zeros(0, np.int64)
        # Each pixel once: the last of its copies keeps its place.
        last_seen[front] = np.arange(front.size)
        front = front[last_seen[front] == np.arange(front.size)]
    distance[np.isinf(distance)] = -1.0
    return distance
