"""MeasureTexture: Haralick's features of every object, all objects at once.

CellProfiler 4.2.8 quantizes the image to 8 bits (``img_as_ubyte``), crops each object
(pixels outside it set to 0) and calls ``mahotas.features.haralick(crop, distance=scale,
ignore_zeros=True)``: for each of four directions a symmetric co-occurrence matrix of the
pixel pairs ``scale`` apart, pairs with a zero-valued pixel dropped. Here the pairs of all
objects are found in one pass per direction (a pixel and its partner in the same object),
and the matrix of each object is never built: every feature is a sum over pairs, over the
object's marginal distributions (dense, objects x gray levels), or, for the angular second
moment and the entropy, over the distinct cells of the matrix (one sort of the pair codes).

As in CellProfiler, an object with no pair in some direction gets no value in any direction
(mahotas raises on the empty matrix), and CellProfiler records every value that is not finite
as 0.
"""

from __future__ import annotations

import numpy as np

from . import compiled
from .objects import FieldObjects

FEATURES = (
    "AngularSecondMoment",
    "Contrast",
    "Correlation",
    "Variance",
    "InverseDifferenceMoment",
    "SumAverage",
    "SumVariance",
    "SumEntropy",
    "Entropy",
    "DifferenceVariance",
    "DifferenceEntropy",
    "InfoMeas1",
    "InfoMeas2",
)
# mahotas' four 2-D directions, (rows, columns); CellProfiler numbers them 00..03.
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))
LEVELS = 256


def measure_texture(objects: FieldObjects, scale: int) -> dict[str, np.ndarray]:
    """``Texture_<feature>_<channel>_<scale>_<direction>_256`` for every channel."""
    out: dict[str, np.ndarray] = {}
    for name in objects.channels:
        gray = quantized(objects, name)
        # mahotas' matrix has (the object's brightest level + 1) rows.
        size = objects.maximum(gray[objects.pixels].astype(np.float64)) + 1
        values = [
            _direction_features(objects, gray, size, scale, d) for d in range(len(DIRECTIONS))
        ]
        empty = np.zeros(objects.count, bool)
        for features in values:
            empty |= np.isnan(features[0])
        for direction, features in enumerate(values):
            for feature, value in zip(FEATURES, features):
                value = np.where(empty | ~np.isfinite(value), 0.0, value)
                out[f"Texture_{feature}_{name}_{scale}_{direction:02d}_{LEVELS}"] = value
    return out


def quantized(objects: FieldObjects, name: str) -> np.ndarray:
    """The channel as CellProfiler gives it to mahotas (``img_as_ubyte``), flat; computed
    at the object pixels only, 0 elsewhere."""
    from skimage.util import img_as_ubyte

    def make() -> np.ndarray:
        gray = np.zeros(objects.labels.size, np.uint8)
        # img_as_ubyte refuses floats outside [-1, 1]; CellProfiler's are in [0, 1].
        gray[objects.pixels] = img_as_ubyte(np.clip(objects.values(name), 0.0, 1.0))
        return gray

    return objects.cached(("ubyte", name), make)


def _pairs(objects: FieldObjects, scale: int, direction: int):
    """Pixel pairs ``scale`` apart in one direction, both in the same object, by label."""

    def make():
        dy, dx = (scale * step for step in DIRECTIONS[direction])
        height, width = objects.shape
        rows, cols = objects.rows + dy, objects.cols + dx
        inside = (rows < height) & (cols >= 0) & (cols < width)
        first = objects.pixels[inside]
        second = first + dy * width + dx
        owner = objects.pixel_labels[inside]
        same = objects.labels.ravel()[second] == owner
        return first[same], second[same], owner[same] - 1

    return objects.cached(("pairs", scale, direction), make)


def _entropy(p: np.ndarray) -> np.ndarray:
    """mahotas' entropy per row: -sum p log2 p, zeros contributing nothing."""
    return -(np.log2(p + (p == 0)) * p).sum(axis=1)


def _direction_features(
    objects: FieldObjects, gray: np.ndarray, size: np.ndarray, scale: int, direction: int
) -> list[np.ndarray]:
    count = objects.count
    first, second, owner = _pairs(objects, scale, direction)
    g1 = gray[first]
    g2 = gray[second]
    keep = (g1 > 0) & (g2 > 0)  # ignore_zeros: row and column 0 of the matrix are cleared
    if compiled.AVAILABLE:
        out = np.full((len(FEATURES), count), np.nan)
        _compiled_features(g1[keep], g2[keep], owner[keep], size.astype(np.float64), out)
        return list(out)
    wide = np.uint32 if count < 2**16 else np.uint64
    g1, g2, owner = g1[keep].astype(wide), g2[keep].astype(wide), owner[keep].astype(wide)
    # The matrix's distinct cells: (object, low, high) codes, one sort; every feature is a
    # sum over cells (or over the object's marginal distributions made from them).
    codes = np.sort((owner << 16) | (np.minimum(g1, g2) << 8) | np.maximum(g1, g2))
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))[: codes.size]
    cells = np.diff(np.append(starts, codes.size)).astype(np.float64)
    codes = codes[starts].astype(np.int64)
    cell_owner = codes >> 16
    low, high = (codes >> 8) & 0xFF, codes & 0xFF
    pairs = np.bincount(cell_owner, cells, minlength=count)
    with np.errstate(divide="ignore", invalid="ignore"):
        # The matrix is symmetric: each pair is counted both ways. Probabilities are counts
        # divided by the total, as mahotas makes them (so that one gray level gives exactly 1).
        total = 2.0 * pairs
        column = total[:, None]
        levels = np.arange(LEVELS, dtype=np.float64)
        marginal = (
            np.bincount(cell_owner * LEVELS + low, cells, minlength=count * LEVELS)
            + np.bincount(cell_owner * LEVELS + high, cells, minlength=count * LEVELS)
        ).reshape(count, LEVELS) / column
        sums = np.bincount(cell_owner * 2 * LEVELS + low + high, cells, count * 2 * LEVELS)
        p_sum = 2.0 * sums.reshape(count, 2 * LEVELS) / column
        differences = np.bincount(cell_owner * LEVELS + high - low, cells, count * LEVELS)
        p_difference = 2.0 * differences.reshape(count, LEVELS) / column
        diagonal = low == high
        # An off-diagonal cell appears twice in the symmetric matrix, a diagonal one once
        # with twice the count.
        p_cell = np.where(diagonal, 2.0, 1.0) * cells / total[cell_owner]
        copies = np.where(diagonal, 1.0, 2.0)
        asm = np.bincount(cell_owner, copies * p_cell**2, minlength=count)
        entropy = np.bincount(cell_owner, -copies * p_cell * np.log2(p_cell), minlength=count)

        mean = marginal @ levels
        variance = marginal @ levels**2 - mean**2
        deviation = np.sqrt(variance)
        products = 2.0 * np.bincount(cell_owner, cells * low * high, minlength=count) / total
        correlation = np.where(
            deviation == 0, 1.0, (products - mean * mean) / deviation / deviation
        )
        contrast = p_difference @ levels**2
        inverse_difference = p_difference @ (1.0 / (1.0 + levels**2))
        sum_levels = np.arange(2 * LEVELS, dtype=np.float64)
        sum_average = p_sum @ sum_levels
        sum_variance = p_sum @ sum_levels**2 - sum_average**2
        sum_entropy = _entropy(p_sum)
        inside = levels[None, :] < size[:, None]
        difference_mean = p_difference.sum(axis=1) / size
        difference_variance = ((p_difference - difference_mean[:, None]) ** 2 * inside).sum(
            axis=1
        ) / size
        difference_entropy = _entropy(p_difference)
        hx = _entropy(marginal)
        flat = marginal.ravel()
        cross = np.log2(flat[cell_owner * LEVELS + low] * flat[cell_owner * LEVELS + high])
        hxy1 = -2.0 * np.bincount(cell_owner, cells * cross, minlength=count) / total
        hxy2 = 2 * hx  # entropy of px (x) py, px = py for a symmetric matrix
        info1 = np.where(hx == 0, entropy - hxy1, (entropy - hxy1) / hx)
        info2 = np.sqrt(np.maximum(0.0, 1.0 - np.exp(-2.0 * (hxy2 - entropy))))
    result = [
        asm,
        contrast,
        correlation,
        variance,
        inverse_difference,
        sum_average,
        sum_variance,
        sum_entropy,
        entropy,
        difference_variance,
        difference_entropy,
        info1,
        info2,
    ]
    # Float even when no object has a pair above level 0 (bincount of no weights is int).
    result = [np.asarray(value, dtype=np.float64) for value in result]
    empty = pairs == 0
    for value in result:
        value[empty] = np.nan
    return result


@compiled.jit(numpy_errors=True)  # NaN and inf where numpy gives them; 0 later, as CellProfiler
def _compiled_features(low_or_high, high_or_low, owner, size, out):
    """:func:`_direction_features` object by object: each object's pairs (``owner`` in
    order) counted into one 256 x 256 matrix of (low, high) cells, the features computed
    from its distinct cells and its marginal, sum and difference distributions (the same
    formulas as the numpy path), the cells it touched cleared for the next. ``out``
    (features x objects, NaN) keeps NaN for objects without a pair."""
    matrix = np.zeros((LEVELS, LEVELS))
    most = min(owner.size, LEVELS * LEVELS)  # an object has no more cells than pairs
    cell_low = np.empty(most, np.int64)
    cell_high = np.empty(most, np.int64)
    marginal = np.zeros(LEVELS)
    p_sum = np.zeros(2 * LEVELS)
    p_difference = np.zeros(LEVELS)
    total_pairs = owner.size
    start = 0
    while start < total_pairs:
        number = owner[start]
        cells = 0
        end = start
        while end < total_pairs and owner[end] == number:
            low = np.int64(min(low_or_high[end], high_or_low[end]))
            high = np.int64(max(low_or_high[end], high_or_low[end]))
            if matrix[low, high] == 0:
                cell_low[cells] = low
                cell_high[cells] = high
                cells += 1
            matrix[low, high] += 1.0
            end += 1
        total = 2.0 * (end - start)  # the symmetric matrix counts each pair both ways
        asm = entropy = products = 0.0
        for cell in range(cells):
            low, high = cell_low[cell], cell_high[cell]
            found = matrix[low, high]
            marginal[low] += found
            marginal[high] += found
            p_sum[low + high] += found
            p_difference[high - low] += found
            products += found * low * high
            if low == high:  # once, with twice the count
                probability = 2.0 * found / total
                asm += probability * probability
                entropy -= probability * np.log2(probability)
            else:  # twice
                probability = found / total
                asm += 2.0 * probability * probability
                entropy -= 2.0 * probability * np.log2(probability)
        mean = squares = 0.0
        hx = 0.0
        for level in range(LEVELS):
            marginal[level] /= total
            mean += marginal[level] * level
            squares += marginal[level] * level * level
            if marginal[level] > 0:
                hx -= marginal[level] * np.log2(marginal[level])
        variance = squares - mean * mean
        deviation = np.sqrt(variance)
        products = 2.0 * products / total
        if deviation == 0:
            correlation = 1.0
        else:
            correlation = (products - mean * mean) / deviation / deviation
        contrast = inverse_difference = difference_sum = difference_entropy = 0.0
        for level in range(LEVELS):
            p_difference[level] = 2.0 * p_difference[level] / total
            value = p_difference[level]
            contrast += value * level * level
            inverse_difference += value / (1.0 + level * level)
            difference_sum += value
            if value > 0:
                difference_entropy -= value * np.log2(value)
        sum_average = sum_squares = sum_entropy = 0.0
        for level in range(2 * LEVELS):
            value = 2.0 * p_sum[level] / total
            sum_average += value * level
            sum_squares += value * level * level
            if value > 0:
                sum_entropy -= value * np.log2(value)
        object_size = size[number]
        difference_mean = difference_sum / object_size
        difference_variance = 0.0
        for level in range(LEVELS):
            if level < object_size:
                spread = p_difference[level] - difference_mean
                difference_variance += spread * spread
        difference_variance /= object_size
        cross = 0.0
        for cell in range(cells):
            low, high = cell_low[cell], cell_high[cell]
            cross += matrix[low, high] * np.log2(marginal[low] * marginal[high])
            matrix[low, high] = 0.0
        hxy1 = -2.0 * cross / total
        if hx == 0:
            info1 = entropy - hxy1
        else:
            info1 = (entropy - hxy1) / hx
        info2 = np.sqrt(max(0.0, 1.0 - np.exp(-2.0 * (2.0 * hx - entropy))))
        out[0, number] = asm
        out[1, number] = contrast
        out[2, number] = correlation
        out[3, number] = variance
        out[4, number] = inverse_difference
        out[5, number] = sum_average
        out[6, number] = sum_squares - sum_average * sum_average
        out[7, number] = sum_entropy
        out[8, number] = entropy
        out[9, number] = difference_variance
        out[10, number] = difference_entropy
        out[11, number] = info1
        out[12, number] = info2
        marginal[:] = 0.0
        p_sum[:] = 0.0
        p_difference[:] = 0.0
        start = end
