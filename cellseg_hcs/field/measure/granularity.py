"""MeasureGranularity within objects: CellProfiler 4.2.8's spectrum, 16 steps, defaults.

CellProfiler works on the whole image: it samples the image down by 0.25 (bilinear), takes
off a background (a grey opening with a disk of radius 10 on a further 0.25 sample, brought
back up), then 16 times erodes the image by a cross and reconstructs it under the
background-free image (an opening by reconstruction), brings each reconstruction back to
full size and records, per object, how much of the object's mean intensity (of the original
image) the step took away, in percent.

The same steps run here, with two changes that leave every number as it was:

- the 16 reconstructions of a channel come from one max-tree of its sample image, its two
  linear passes run for all 16 seeds together (:func:`openings_by_reconstruction`; without
  numba, skimage's own reconstruction loop on integer ranks computed once per channel);
- the full-size reconstruction is never made: an object's mean of a bilinear interpolation
  is a fixed weighted sum of the sample grid, so the weights (one sparse matrix per field)
  are summed once and each step is a sparse product.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from . import compiled, reconstruction
from .objects import FieldObjects

SUBSAMPLE = 0.25  # "Subsampling factor for granularity measurements"
BACKGROUND_SUBSAMPLE = 0.25  # "Subsampling factor for background reduction"
BACKGROUND_RADIUS = 10  # "Radius of structuring element"
SPECTRUM_LENGTH = 16  # "Range of the granular spectrum"


def measure_granularity(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``Granularity_<step>_<channel>`` for steps 1..16 and every channel."""
    out: dict[str, np.ndarray] = {}
    if objects.count == 0:
        for name in objects.channels:
            for step in range(1, SPECTRUM_LENGTH + 1):
                out[f"Granularity_{step}_{name}"] = np.zeros(0)
        return out
    grid = objects.cached("granularity grid", lambda: _Grid(objects))
    for name in objects.channels:
        spectrum = _spectrum(objects, grid, name)
        for step in range(SPECTRUM_LENGTH):
            out[f"Granularity_{step + 1}_{name}"] = spectrum[:, step]
    return out


class _Grid:
    """The sample grids and the weights that give objects' means of the full-size image."""

    def __init__(self, objects: FieldObjects) -> None:
        self.objects = objects
        self.shape = np.array(objects.shape, dtype=float)
        # CellProfiler's shapes stay fractional (217.25 rows) and index an mgrid as such.
        self.sample_shape = self.shape * SUBSAMPLE
        self.background_shape = self.sample_shape * BACKGROUND_SUBSAMPLE

    @staticmethod
    def points(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        return rows, cols

    @cached_property
    def object_means(self) -> sparse.csr_matrix:
        """``(objects, sample pixels)``: an object's mean of the bilinear full-size image.

        Each object pixel gives its four interpolation weights to the sample pixels around
        it; they are summed per object over the sample pixels of the object's box (one
        ``bincount`` per corner), so each object's row holds each sample pixel once.
        """
        objects = self.objects
        height, width = objects.shape
        rows_ = len(np.arange(0, self.sample_shape[0]))
        cols_ = len(np.arange(0, self.sample_shape[1]))
        # As CellProfiler maps full-size pixels onto the sample grid.
        scale_y = float(self.sample_shape[0] - 1) / float(height - 1)
        scale_x = float(self.sample_shape[1] - 1) / float(width - 1)
        if compiled.AVAILABLE:
            weights, top, left, widths, pointers = compiled.bilinear_weights(
                objects.rows, objects.cols, objects.starts, objects.areas, scale_y, scale_x
            )
            sizes = np.diff(pointers)
        else:
            weights, top, left, widths, sizes, pointers = _bilinear_weights(
                objects, scale_y, scale_x
            )
        box = np.repeat(np.arange(objects.count), sizes)
        local = np.arange(weights.size) - pointers[box]
        # A corner past the grid's edge has weight 0: point it anywhere inside.
        row = np.minimum(top[box] + local // widths[box], rows_ - 1)
        column = np.minimum(left[box] + local % widths[box], cols_ - 1)
        return sparse.csr_matrix(
            (weights, row * cols_ + column, pointers), shape=(objects.count, rows_ * cols_)
        )


def _bilinear_weights(objects: FieldObjects, scale_y: float, scale_x: float) -> tuple:
    """:func:`.compiled.bilinear_weights` in numpy: one ``bincount`` per corner."""
    y = objects.rows.astype(float) * scale_y
    x = objects.cols.astype(float) * scale_x
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    share = 1.0 / objects.spread(objects.areas.astype(np.float64))
    # Each object's box on the sample grid, one more row and column for the far corners.
    top, left = objects.minimum(y0), objects.minimum(x0)
    widths = objects.maximum(x0) - left + 2
    sizes = (objects.maximum(y0) - top + 2) * widths
    pointers = np.concatenate(([0], np.cumsum(sizes)))
    owner = objects.pixel_labels - 1
    width_of = widths[owner]
    cell = pointers[owner] + (y0 - top[owner]) * width_of + (x0 - left[owner])
    weights = np.zeros(int(pointers[-1]))
    for dy, wy, dx, wx in (
        (0, 1 - fy, 0, 1 - fx),
        (0, 1 - fy, 1, fx),
        (1, fy, 0, 1 - fx),
        (1, fy, 1, fx),
    ):
        weights += np.bincount(cell + dy * width_of + dx, wy * wx * share, weights.size)
    return weights, top, left, widths, sizes, pointers


def _spectrum(objects: FieldObjects, grid: _Grid, name: str) -> np.ndarray:
    opened = objects.of_images(("granularity", name), lambda: _openings(grid, name))
    means = grid.object_means @ opened.T
    start = objects.mean(objects.values(name))  # of the original image, as CellProfiler's
    current = start
    start = np.maximum(start, np.finfo(float).eps)
    steps = np.empty((objects.count, SPECTRUM_LENGTH))
    for step in range(SPECTRUM_LENGTH):
        steps[:, step] = (current - means[:, step]) * 100 / start
        current = means[:, step]
    return steps


def _openings(grid: _Grid, name: str) -> np.ndarray:
    """``(16, sample pixels)``: the background-free sample image opened 1..16 times."""
    image = grid.objects.channels[name]
    sample_rows, sample_cols = grid.points(grid.sample_shape)
    pixels = ndi.map_coordinates(image, (sample_rows / SUBSAMPLE, sample_cols / SUBSAMPLE), order=1)
    back_rows, back_cols = grid.points(grid.background_shape)
    background = ndi.map_coordinates(
        pixels, (back_rows / BACKGROUND_SUBSAMPLE, back_cols / BACKGROUND_SUBSAMPLE), order=1
    )
    background = opened_by_disk(background, BACKGROUND_RADIUS)
    up_rows, up_cols = grid.points(grid.sample_shape)
    up_rows *= float(grid.background_shape[0] - 1) / float(grid.sample_shape[0] - 1)
    up_cols *= float(grid.background_shape[1] - 1) / float(grid.sample_shape[1] - 1)
    pixels -= ndi.map_coordinates(background, (up_rows, up_cols), order=1)
    pixels[pixels < 0] = 0
    return openings_by_reconstruction(pixels, SPECTRUM_LENGTH).reshape(SPECTRUM_LENGTH, -1)


def opened_by_disk(image: np.ndarray, radius: int) -> np.ndarray:
    """skimage's ``dilation(erosion(image, disk(radius)), disk(radius))`` (reflected
    border), value for value: the disk's rows are horizontal segments, so each filter is
    the extreme over its rows of one-dimensional running extremes, not a pass over the
    disk's every pixel at every pixel. Compiled (:func:`.compiled.disk_extreme`: the
    running extremes of every half-width, grown one pixel at a time), else with scipy's
    one-dimensional filters, one call per row of the disk."""
    from skimage.morphology import disk

    widths = disk(radius, dtype=bool).sum(axis=1)
    if compiled.AVAILABLE:
        image = np.ascontiguousarray(image, dtype=np.float64)
        halves = (widths.astype(np.int64) - 1) // 2
        return compiled.disk_extreme(compiled.disk_extreme(image, halves, True), halves, False)
    eroded = _by_rows(image, widths, ndi.minimum_filter1d, np.minimum)
    return _by_rows(eroded, widths, ndi.maximum_filter1d, np.maximum)


def _by_rows(image: np.ndarray, widths: np.ndarray, running, combine) -> np.ndarray:
    radius = len(widths) // 2
    height = image.shape[0]
    # Row r + dy of the image reflected at its edges (scipy's "reflect": the edge repeats).
    rows = np.arange(-radius, height + radius)
    period = 2 * height
    rows = np.mod(rows, period)
    rows = np.where(rows >= height, period - 1 - rows, rows)
    padded = image[rows]
    out = None
    for offset, width in enumerate(widths):
        part = running(padded[offset : offset + height], int(width), axis=1, mode="reflect")
        out = part if out is None else combine(out, part, out=out)
    return out


def openings_by_reconstruction(image: np.ndarray, count: int) -> np.ndarray:
    """CellProfiler's granular spectrum loop, ``(count, *image.shape)``: for k = 1..count,
    the image eroded k times by a cross, then reconstructed by dilation (4-connected) under
    the image.

    Each equals ``skimage.morphology.reconstruction(seed, image, footprint=disk(1))``,
    value for value. All ``count`` reconstructions come from one max-tree of the image
    (:class:`~cellseg_hcs.field.measure.reconstruction.MaxTree`, compiled with numba), or
    without numba from skimage's loop (:func:`openings_by_skimage`). The erosion by a cross
    is four minima of shifted views (skimage's erosion with its reflected border gives the
    same: a pixel's reflection is itself).
    """
    if compiled.AVAILABLE:  # a view of (pixels, count): the layout granularity's product wants
        return reconstruction.MaxTree(image).openings(count).reshape(count, *np.shape(image))
    return np.stack(list(openings_by_skimage(image, count)))


def openings_by_skimage(image: np.ndarray, count: int) -> Iterator[np.ndarray]:
    """:func:`openings_by_reconstruction` without numba: skimage's own reconstruction loop
    on integer ranks of the image, found once: an erosion of ranks is the ranks of the
    erosion, so the seeds never need sorting again, and the loop's two sorts per call become
    one sort of packed integers. Ranks and links are 32-bit (the loop takes either width;
    half the memory to walk).
    """
    try:
        from skimage.morphology._grayreconstruct import reconstruction_loop
    except ImportError:  # skimage moved its loop: the public function, slower
        from skimage.morphology import disk, erosion, reconstruction

        cross = disk(1, dtype=bool)
        seed = image
        for _ in range(count):
            seed = erosion(seed, cross)
            yield reconstruction(seed, image, footprint=cross)
        return
    values, ranks = np.unique(image, return_inverse=True)
    height, width = image.shape
    plane = (height + 2) * (width + 2)
    wide = 2 * plane >= 2**31  # links past int32
    rank_type, link_type = (np.uint64, np.int64) if wide else (np.uint32, np.int32)
    ranks = ranks.reshape(image.shape).astype(rank_type)
    top = values.size  # ranks are below it
    neighbours = np.array([-(width + 2), -1, 1, width + 2], link_type)
    # The mask's half of the packed keys never changes. A key is the rank counted down
    # from the top (so an ascending sort gives descending ranks; ties in any order give
    # the same reconstruction) over the position.
    mask_half = np.zeros((height + 2, width + 2), rank_type)
    mask_half[1:-1, 1:-1] = ranks
    images = np.empty((2, height + 2, width + 2), rank_type)
    flat = images.reshape(-1)
    previous = np.empty(flat.size, link_type)
    following = np.empty(flat.size, link_type)
    seed = ranks
    for _ in range(count):
        seed = _eroded_by_cross(seed)
        pad = seed.min()
        images[1] = mask_half  # the loop writes into the mask's half too
        images[0] = pad
        images[0, 1:-1, 1:-1] = seed
        images[1, 0, :] = images[1, -1, :] = images[1, :, 0] = images[1, :, -1] = pad
        if top <= 2**16:  # 16-bit keys: numpy's stable sort is a radix sort
            order = np.argsort(np.subtract(top - 1, flat).astype(np.uint16), kind="stable")
        else:
            keys = (np.uint64(top) - flat.astype(np.uint64)) << np.uint64(32)
            keys = np.sort(keys | np.arange(flat.size, dtype=np.uint64))
            order = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
        links = order.astype(link_type)
        previous[order[0]] = following[order[-1]] = -1
        previous[order[1:]] = links[:-1]
        following[order[:-1]] = links[1:]
        reconstruction_loop(flat, previous, following, neighbours, int(order[0]), plane)
        yield values[flat[:plane].reshape(height + 2, width + 2)[1:-1, 1:-1]]


def _eroded_by_cross(image: np.ndarray) -> np.ndarray:
    """The minimum over each pixel and its 4-neighbours inside the image."""
    out = image.copy()
    np.minimum(out[1:], image[:-1], out=out[1:])
    np.minimum(out[:-1], image[1:], out=out[:-1])
    np.minimum(out[:, 1:], image[:, :-1], out=out[:, 1:])
    np.minimum(out[:, :-1], image[:, 1:], out=out[:, :-1])
    return out
