"""MeasureObjectSizeShape: size, moments, convex hull, radii and Feret diameters.

CellProfiler 4.2.8 takes most of these from scikit-image's ``regionprops`` on each object's
box; here each is computed for all objects at once, by the same definitions:

- moments from sums over the objects' pixels (coordinates relative to the box, as
  regionprops), the inertia tensor and its eigenvalues from them (axis lengths,
  eccentricity, orientation), normalized moments NaN below order 2, as skimage's;
- perimeter: skimage's 4-neighbourhood estimate (each border pixel weighted by the pattern
  of its border neighbours), from one histogram of patterns per object;
- Euler number (8-connected): skimage's count of 2 x 2 patterns, per object;
- convex area: the pixels whose centres lie in or on the convex hull of the pixels' edge
  midpoints (skimage's ``convex_hull_image``), counted row by row in exact integer
  arithmetic from one hull per object (centrosome's, on doubled coordinates);
- maximum, mean and median radius: the distance transform of each object's box, padded;
- Feret diameters: centrosome's, on CellProfiler's own hulls, as CellProfiler.
"""

from __future__ import annotations

import numpy as np

from . import compiled
from .objects import FieldObjects, distances_to_edge

_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2
_EULER_8 = np.array([0, 0, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0, 0, 0, -1, 0])


def measure_shape(objects: FieldObjects, advanced: bool = False) -> dict[str, np.ndarray]:
    """``AreaShape_<feature>`` columns; ``advanced``: moments and inertia too."""
    count = objects.count
    area = objects.areas.astype(np.float64)
    boxes = objects.boxes.astype(np.float64)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    moments = _moments(objects)
    central = _central_moments(objects, moments)
    tensor, eigenvalues = _inertia(central)
    major, minor = 4 * np.sqrt(eigenvalues[:, 0]), 4 * np.sqrt(eigenvalues[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(
            eigenvalues[:, 0] == 0, 0.0, np.sqrt(1 - eigenvalues[:, 1] / eigenvalues[:, 0])
        )
        a, b, c = tensor[:, 0, 0], tensor[:, 0, 1], tensor[:, 1, 1]
        orientation = np.where(
            a - c == 0,
            np.where(b < 0, np.pi / 4.0, -np.pi / 4.0),
            0.5 * np.arctan2(-2 * b, c - a),
        )
        perimeter = _perimeter(objects)
        convex_area = _convex_area(objects)
        radii = distances_to_edge(objects, image_border_is_edge=True)
        maximum_radius = objects.maximum(radii) if count else np.zeros(0)
        mean_radius = objects.mean(radii) if count else np.zeros(0)
        minimum_feret, maximum_feret = _feret(objects)
        out = {
            "Area": area,
            "Perimeter": perimeter,
            "MajorAxisLength": major,
            "MinorAxisLength": minor,
            "Eccentricity": eccentricity,
            "Orientation": orientation * (180 / np.pi),
            "Center_X": objects.mean(objects.cols.astype(np.float64)),
            "Center_Y": objects.mean(objects.rows.astype(np.float64)),
            "BoundingBoxArea": box_area,
            "BoundingBoxMinimum_X": boxes[:, 1],
            "BoundingBoxMaximum_X": boxes[:, 3],
            "BoundingBoxMinimum_Y": boxes[:, 0],
            "BoundingBoxMaximum_Y": boxes[:, 2],
            "FormFactor": 4.0 * np.pi * area / perimeter**2,
            "Extent": area / box_area,
            "Solidity": area / convex_area,
            "Compactness": perimeter**2 / np.maximum(4.0 * np.pi * area, 1),
            "EulerNumber": _euler_number(objects),
            "MaximumRadius": maximum_radius,
            "MeanRadius": mean_radius,
            "MedianRadius": _median(objects, radii),
            "ConvexArea": convex_area,
            "MinFeretDiameter": minimum_feret,
            "MaxFeretDiameter": maximum_feret,
            "EquivalentDiameter": (2 * 2 * area / np.pi) ** (1 / 2),
        }
        if advanced:
            normalized = _normalized_moments(central)
            for p in range(4):
                for q in range(4):
                    if p < 3:
                        out[f"SpatialMoment_{p}_{q}"] = moments[:, p, q]
                        out[f"CentralMoment_{p}_{q}"] = central[:, p, q]
                    out[f"NormalizedMoment_{p}_{q}"] = normalized[:, p, q]
            for index, value in enumerate(_hu_moments(normalized)):
                out[f"HuMoment_{index}"] = value
            for i in range(2):
                for j in range(2):
                    out[f"InertiaTensor_{i}_{j}"] = tensor[:, i, j]
                out[f"InertiaTensorEigenvalues_{i}"] = eigenvalues[:, i]
    return {f"AreaShape_{key}": np.asarray(value, np.float64) for key, value in out.items()}


def _moments(objects: FieldObjects) -> np.ndarray:
    """``(N, 4, 4)`` raw moments of each object's box image (rows first, as skimage)."""
    owner = objects.pixel_labels - 1
    rows = (objects.rows - objects.boxes[owner, 0]).astype(np.float64)
    cols = (objects.cols - objects.boxes[owner, 1]).astype(np.float64)
    return _power_sums(objects, rows, cols)


def _power_sums(objects: FieldObjects, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    out = np.zeros((objects.count, 4, 4))
    if objects.count == 0:
        return out
    row_powers = [np.ones_like(rows), rows, rows * rows, rows * rows * rows]
    col_powers = [np.ones_like(cols), cols, cols * cols, cols * cols * cols]
    for p in range(4):
        for q in range(4):
            out[:, p, q] = objects.sum(row_powers[p] * col_powers[q])
    return out


def _central_moments(objects: FieldObjects, moments: np.ndarray) -> np.ndarray:
    """Central moments about the centroid within the box (skimage's ``centroid_local``)."""
    if objects.count == 0:
        return np.zeros((0, 4, 4))
    owner = objects.pixel_labels - 1
    centre_row = moments[:, 1, 0] / moments[:, 0, 0]
    centre_col = moments[:, 0, 1] / moments[:, 0, 0]
    rows = (objects.rows - objects.boxes[owner, 0]) - centre_row[owner]
    cols = (objects.cols - objects.boxes[owner, 1]) - centre_col[owner]
    return _power_sums(objects, rows, cols)


def _normalized_moments(central: np.ndarray) -> np.ndarray:
    out = np.full_like(central, np.nan)
    for p in range(4):
        for q in range(4):
            if p + q >= 2:
                out[:, p, q] = central[:, p, q] / central[:, 0, 0] ** ((p + q) / 2 + 1)
    return out


def _hu_moments(nu: np.ndarray) -> list[np.ndarray]:
    """The seven Hu invariants, as skimage writes them (``nu[:, row power, col power]``)."""
    n20, n02, n11 = nu[:, 2, 0], nu[:, 0, 2], nu[:, 1, 1]
    n30, n03, n21, n12 = nu[:, 3, 0], nu[:, 0, 3], nu[:, 2, 1], nu[:, 1, 2]
    t0 = n30 + n12
    t1 = n21 + n03
    q0 = t0 * t0
    q1 = t1 * t1
    n4 = 4 * n11
    s = n20 + n02
    d = n20 - n02
    p0 = n30 - 3 * n12
    p1 = 3 * n21 - n03
    return [
        s,
        d * d + n4 * n11,
        p0 * p0 + p1 * p1,
        q0 + q1,
        p0 * t0 * (q0 - 3 * q1) + p1 * t1 * (3 * q0 - q1),
        d * (q0 - q1) + n4 * t0 * t1,
        p1 * t0 * (q0 - 3 * q1) - p0 * t1 * (3 * q0 - q1),
    ]


def _inertia(central: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """skimage's inertia tensor ``[[mu02, -mu11], [-mu11, mu20]] / mu00`` and its
    eigenvalues, largest first, clipped at 0."""
    mu00 = central[:, 0, 0]
    tensor = np.empty((len(central), 2, 2))
    tensor[:, 0, 0] = central[:, 0, 2] / mu00
    tensor[:, 1, 1] = central[:, 2, 0] / mu00
    tensor[:, 0, 1] = tensor[:, 1, 0] = -central[:, 1, 1] / mu00
    if len(central):
        eigenvalues = np.clip(np.linalg.eigvalsh(tensor), 0, None)[:, ::-1]
    else:
        eigenvalues = np.zeros((0, 2))
    return tensor, eigenvalues


def _neighbour_labels(objects: FieldObjects, dy: int, dx: int) -> np.ndarray:
    """The label at each object pixel's (dy, dx) neighbour, 0 outside the image."""
    height, width = objects.shape
    rows, cols = objects.rows + dy, objects.cols + dx
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    out = np.zeros(objects.pixels.size, objects.labels.dtype)
    out[inside] = objects.labels.ravel()[objects.pixels[inside] + dy * width + dx]
    return out


def _perimeter(objects: FieldObjects) -> np.ndarray:
    """skimage's ``perimeter(image, 4)`` of every object: compiled (one pass over the
    object pixels for the border, one for the border pixels' patterns), else with the
    object pixels' neighbours gathered by numpy."""
    if compiled.AVAILABLE and objects.count:
        return compiled.perimeters(
            np.ascontiguousarray(objects.labels),
            objects.rows,
            objects.cols,
            objects.pixel_labels,
            objects.count,
            _PERIMETER_WEIGHTS,
        )
    own = objects.pixel_labels
    height, width = objects.shape
    border = np.zeros(objects.pixels.size, bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        border |= _neighbour_labels(objects, dy, dx) != own
    # A pixel's pattern: 1 (itself) + 2 per border 4-neighbour + 10 per border diagonal one.
    flat_border = np.zeros(height * width, bool)
    flat_border[objects.pixels[border]] = True
    code = np.ones(int(border.sum()), np.int64)
    rows, cols = objects.rows[border], objects.cols[border]
    mine = own[border]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            r, c = rows + dy, cols + dx
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            at = np.where(inside, r * width + c, 0)
            same = inside & flat_border[at] & (objects.labels.ravel()[at] == mine)
            code += same * (2 if dy == 0 or dx == 0 else 10)
    return np.bincount(mine - 1, _PERIMETER_WEIGHTS[code], minlength=objects.count)


def _euler_number(objects: FieldObjects) -> np.ndarray:
    """skimage's ``euler_number(image, connectivity=2)`` of every object: each 2 x 2 window
    with a pixel of the object adds a coefficient of the object's pattern in it (compiled:
    one scan of the windows; without numba, four passes over the object pixels)."""
    if objects.count == 0:
        return np.zeros(0)
    if compiled.AVAILABLE:
        labels = np.ascontiguousarray(objects.labels)
        return compiled.euler_numbers(labels, objects.count, _EULER_8.astype(np.float64))
    height, width = objects.shape
    padded = np.zeros((height + 2, width + 2), objects.labels.dtype)
    padded[1:-1, 1:-1] = objects.labels
    flat = padded.ravel()
    stride = width + 2
    here = (objects.rows + 1) * stride + objects.cols + 1  # each pixel in the padded image
    own = objects.pixel_labels
    # A window by its bottom-right corner w; its corners w (1), w-1 (4), w-stride (2),
    # w-stride-1 (8). Each object pixel is in four windows, as each corner; a window is
    # counted for an object once, through the first corner (in that order) it holds.
    corners = (0, 1, stride, stride + 1)
    weights = (1, 4, 2, 8)
    total = np.zeros(objects.count)
    for role, offset in enumerate(corners):
        window = here + offset  # the window in which this pixel is corner `role`
        earlier = np.zeros(own.size, bool)
        code = np.zeros(own.size, np.int64)
        for other, (other_offset, weight) in enumerate(zip(corners, weights)):
            holds = flat[window - other_offset] == own
            code += holds * weight
            if other < role:
                earlier |= holds
        counted = ~earlier
        total += np.bincount(own[counted] - 1, _EULER_8[code[counted]], minlength=objects.count)
    return total


def _convex_area(objects: FieldObjects) -> np.ndarray:
    """Pixel centres in or on the hull of every pixel's edge midpoints, per object."""
    from centrosome.cpmorphology import convex_hull_ijv

    count = objects.count
    if count == 0:
        return np.zeros(0)
    # The hull only needs each row's first and last pixel; in doubled coordinates (shifted
    # by 2: centrosome wants them >= 0) their edge midpoints are integers.
    owner = objects.pixel_labels.astype(np.int64)
    ends = objects.row_ends
    rows, cols, labels = 2 * objects.rows[ends] + 2, 2 * objects.cols[ends] + 2, owner[ends]
    points = np.concatenate(
        [
            np.column_stack([rows + dy, cols + dx, labels])
            for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0))
        ]
    )
    hull, sizes = convex_hull_ijv(points, np.arange(1, count + 1))
    label, y0, x0 = (hull[:, k].astype(np.int64) for k in range(3))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    following = np.arange(len(hull)) + 1
    ends_at = (starts + sizes)[label - 1]
    following[following == ends_at] = starts[label[following == ends_at] - 1]
    y1, x1 = y0[following], x0[following]
    # Every even (pixel) row each edge spans, with the edge's x there as an exact fraction.
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    first_row = low + (low % 2)
    spans = np.maximum((high - first_row) // 2 + 1, 0)
    edge = np.repeat(np.arange(len(hull)), spans)
    offset = np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    y = first_row[edge] + 2 * offset
    dy, dx = (y1 - y0)[edge], (x1 - x0)[edge]
    flat_edge = dy == 0
    sign = np.where(dy < 0, -1, 1)
    denominator = np.where(flat_edge, 1, dy * sign)
    numerator = np.where(flat_edge, x0[edge], x0[edge] * dy * sign + (y - y0[edge]) * dx * sign)
    # Leftmost pixel centre c with 2c >= x: ceil(x / 2); rightmost: floor(x / 2).
    left = -((-numerator) // (2 * denominator))
    right = numerator // (2 * denominator)
    extra_left = np.where(flat_edge, -((-x1[edge]) // 2), left)
    extra_right = np.where(flat_edge, x1[edge] // 2, right)
    key = label[edge] * (2 * objects.shape[0] + 4) + y
    order = np.argsort(key, kind="stable")
    key = key[order]
    bounds = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    lowest = np.minimum.reduceat(np.minimum(left, extra_left)[order], bounds)
    highest = np.maximum.reduceat(np.maximum(right, extra_right)[order], bounds)
    per_row = np.maximum(highest - lowest + 1, 0)
    return np.bincount(label[edge][order][bounds] - 1, per_row, minlength=count)


def _median(objects: FieldObjects, values: np.ndarray) -> np.ndarray:
    """centrosome's median_of_labels of distances (square roots of integers): the middle
    value, or the mean of the middle two."""
    if objects.count == 0:
        return np.zeros(0)
    # Distances are square roots of integers: those integers order them, and below 2**16
    # numpy's stable sort of them is a radix sort.
    squares = np.rint(values * values)
    if squares.size and squares.max() < 2**16:
        by_value = np.argsort(squares.astype(np.uint16), kind="stable")
    else:
        by_value = np.argsort(values, kind="stable")
    owner = objects.pixel_labels[by_value]
    order = by_value[np.argsort(owner, kind="stable")]
    ordered = values[order]
    areas, starts = objects.areas, objects.starts
    low = starts + (areas - 1) // 2
    median = ordered[low].copy()
    even = areas % 2 == 0
    median[even] = (median[even] + ordered[low[even] + 1]) / 2
    return median


def _feret(objects: FieldObjects) -> tuple[np.ndarray, np.ndarray]:
    """centrosome's Feret diameters on the hull of the pixel centres, as CellProfiler:
    its walk compiled (:func:`.compiled.feret_diameters`, the same floats), else its own
    function."""
    from centrosome.cpmorphology import feret_diameter

    if objects.count == 0:
        return np.zeros(0), np.zeros(0)
    hull, sizes = objects.hulls
    if compiled.AVAILABLE:
        points = np.ascontiguousarray(hull[:, 1:], dtype=np.float64)
        return compiled.feret_diameters(points, np.asarray(sizes, dtype=np.int64))
    return feret_diameter(hull, sizes, np.arange(1, objects.count + 1))
