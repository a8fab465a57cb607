"""MeasureColocalization within objects, for every pair of channels, as CellProfiler 4.2.8.

With the module's defaults ("Run all metrics", threshold 15% of each object's maximum,
Costes' threshold by the "Faster" bisection), per object and pair ``(A, B)`` (A first in
the channel order):

- ``Correlation_A_B``: Pearson's r of the object's pixels;
- ``Manders_A_B``, ``Manders_B_A``: of A's intensity above its threshold, the share where B
  is also above its threshold (and the other way round);
- ``RWC_A_B``, ``RWC_B_A``: the same weighted by how close the two pixels' ranks are, pixels
  ranked over all objects together;
- ``Overlap_A_B`` and ``K_A_B``, ``K_B_A``: Manders' overlap coefficient and its two parts
  over the thresholded pixels;
- ``Costes_A_B``, ``Costes_B_A``: Manders' coefficients above Costes' automatic thresholds,
  which CellProfiler finds once on the whole image (not per object).

CellProfiler measures the slope of the intensities' regression only for whole images, so an
object has no ``Slope`` column.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from . import compiled
from .objects import FieldObjects

THRESHOLD = 15.0  # percent of the object's maximum intensity
DEFAULT_SCALE = 255  # CellProfiler's scale when neither image has one


def measure_correlation(objects: FieldObjects) -> dict[str, np.ndarray]:
    """The columns above for every pair of channels, in channel order."""
    out: dict[str, np.ndarray] = {}
    for first, second in itertools.combinations(objects.channels, 2):
        out.update(_pair(objects, first, second))
    return out


def _scale(objects: FieldObjects, first: str, second: str) -> float:
    scales = [s for s in (objects.scales[first], objects.scales[second]) if s is not None]
    return max(scales) if scales else DEFAULT_SCALE


def _pair(objects: FieldObjects, first: str, second: str) -> dict[str, np.ndarray]:
    count = objects.count
    a, b = objects.values(first), objects.values(second)
    names = {
        "Correlation": f"Correlation_Correlation_{first}_{second}",
        "M1": f"Correlation_Manders_{first}_{second}",
        "M2": f"Correlation_Manders_{second}_{first}",
        "RWC1": f"Correlation_RWC_{first}_{second}",
        "RWC2": f"Correlation_RWC_{second}_{first}",
        "Overlap": f"Correlation_Overlap_{first}_{second}",
        "K1": f"Correlation_K_{first}_{second}",
        "K2": f"Correlation_K_{second}_{first}",
        "C1": f"Correlation_Costes_{first}_{second}",
        "C2": f"Correlation_Costes_{second}_{first}",
    }
    if count == 0:
        return {name: np.zeros(0) for name in names.values()}
    spread = objects.spread
    owner = objects.pixel_labels - 1

    def per_object(values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        if where is None:
            return objects.sum(values)
        return np.bincount(owner[where], values[where], minlength=count)

    # Pearson's r as CellProfiler writes it: sum(x y / (|x| |y|)), x and y centred.
    x = a - spread(objects.mean(a))
    y = b - spread(objects.mean(b))
    norm_x = np.sqrt(per_object(x**2))
    norm_y = np.sqrt(per_object(y**2))
    correlation = per_object(x * y / (spread(norm_x) * spread(norm_y)))

    above_a = a >= spread(THRESHOLD / 100 * objects.maximum(a))
    above_b = b >= spread(THRESHOLD / 100 * objects.maximum(b))
    both = above_a & above_b
    total_a = per_object(a, above_a)
    total_b = per_object(b, above_b)
    if np.any(both):
        m1 = per_object(a, both) / total_a
        m2 = per_object(b, both) / total_b
    else:
        m1 = m2 = np.zeros(count)

    weight = _rank_weights(_ranks(objects, first), _ranks(objects, second))
    if np.any(both):
        rwc1 = per_object(a * weight, both) / total_a
        rwc2 = per_object(b * weight, both) / total_b
        squares_a = per_object(a**2, both)
        squares_b = per_object(b**2, both)
        products = per_object(a * b, both)
        overlap = products / np.sqrt(squares_a * squares_b)
        k1 = products / squares_a
        k2 = products / squares_b
    else:
        rwc1 = rwc2 = overlap = k1 = k2 = np.zeros(count)

    threshold_a, threshold_b = objects.of_images(
        ("costes", first, second),
        lambda: costes_thresholds(
            objects.channels[first].ravel(),
            objects.channels[second].ravel(),
            _scale(objects, first, second),
            (objects.integers[first], objects.integers[second]),
            (objects.scales[first], objects.scales[second]),
        ),
    )
    over_a, over_b = a > threshold_a, b > threshold_b
    both_c = over_a & over_b
    total_a_c = per_object(a, a >= threshold_a) if np.any(over_a) else np.zeros(count)
    total_b_c = per_object(b, b >= threshold_b) if np.any(over_b) else np.zeros(count)
    if np.any(both_c):
        c1 = per_object(a, both_c) / total_a_c
        c2 = per_object(b, both_c) / total_b_c
    else:
        c1 = c2 = np.zeros(count)
    values = {
        "Correlation": correlation,
        "M1": m1,
        "M2": m2,
        "RWC1": rwc1,
        "RWC2": rwc2,
        "Overlap": overlap,
        "K1": k1,
        "K2": k2,
        "C1": c1,
        "C2": c2,
    }
    return {names[key]: np.asarray(value, dtype=np.float64) for key, value in values.items()}


def _ranks(objects: FieldObjects, name: str) -> np.ndarray:
    """Dense ranks (0 = lowest; equal values share a rank) over all objects' pixels."""
    raw = objects.integers[name]
    if raw is not None:  # integers: a table of the values present
        values = raw.ravel()[objects.pixels]
        present = np.zeros(int(values.max()) + 1, bool)
        present[values] = True
        return (np.cumsum(present) - 1)[values]
    values = objects.values(name)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    steps = np.concatenate(([0], np.cumsum(ordered[1:] != ordered[:-1])))
    ranks = np.empty(values.size, np.int64)
    ranks[order] = steps
    return ranks


def _rank_weights(rank_a: np.ndarray, rank_b: np.ndarray) -> np.ndarray:
    """RWC's weight of each pixel: (R - |rank a - rank b|) / R, R = the highest rank + 1."""
    highest = max(rank_a.max(), rank_b.max()) + 1
    return (highest - np.abs(rank_a - rank_b)) * 1.0 / highest


def costes_thresholds(
    a: np.ndarray,
    b: np.ndarray,
    scale: float,
    integers: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    levels: tuple[float | None, float | None] = (None, None),
) -> tuple[float, float]:
    """Costes' automatic thresholds on two whole images, CellProfiler's "Faster" bisection.

    The regression line of b on a (orthogonal least squares over pixels where either is
    above 0) is walked down in steps of 1/scale; the threshold is the last point where the
    pixels below it (in a or in b) still correlate positively. CellProfiler searches
    candidates from 5/6 of the window down; each candidate needs Pearson's r of the pixels
    below it, which here comes from running sums over the candidates for which each pixel
    is outside the "below" set (an interval, for a rising or a falling line), so a
    candidate costs O(1) instead of a pass over the image.
    ``integers`` and ``levels``: the raw integer images and their scales, where the images
    are integers over a scale (``FieldObjects.integers``, ``.scales``), which makes finding
    that order a table look-up.
    """

    def pearsonr(x, y):  # scipy.stats takes a second to import: only when needed
        from scipy.stats import pearsonr as scipy_pearsonr

        return scipy_pearsonr(x, y)

    a_all, b_all = a, b
    nonzero = (a > 0) | (b > 0)
    if not nonzero.all():  # else the same arrays, uncopied: the same numbers
        a, b = a[nonzero], b[nonzero]
    buffer = np.empty_like(a)
    xvar, xmean = _variance_and_mean(a, buffer)
    yvar, ymean = _variance_and_mean(b, buffer)
    zvar, _ = _variance_and_mean(np.add(a, b, out=buffer), buffer)
    covar = 0.5 * (zvar - (xvar + yvar))
    slope = ((yvar - xvar) + np.sqrt((yvar - xvar) * (yvar - xvar) + 4 * (covar * covar))) / (
        2 * covar
    )
    intercept = ymean - slope * xmean
    below = _BelowLine(a_all, b_all, slope, intercept, scale, integers, levels)

    left, right = 1, scale
    middle = ((right - left) // (6 / 5)) + left
    last = 0
    valid = 1
    while last != middle:
        r = below.correlation(middle, pearsonr)
        if r is None or r < 0:
            left = middle - 1
        elif r >= 0:
            right = middle + 1
            valid = middle
        # r is NaN (a constant set): neither bound moves, as in CellProfiler.
        last = middle
        if right - left > 6:
            middle = ((right - left) // (6 / 5)) + left
        else:
            middle = ((right - left) // 2) + left
    threshold_a = (valid - 1) / scale
    return threshold_a, (slope * threshold_a) + intercept


@compiled.jit
def _add_pixel(x, y, enters, leaves, starts, ends, total):
    """One pixel's count, x, y, x^2, y^2 and xy: into ``total``, and into column ``enters``
    of ``starts`` and ``leaves`` of ``ends`` when ``enters < leaves``."""
    xx, yy, xy = x * x, y * y, x * y
    total[0] += 1.0
    total[1] += x
    total[2] += y
    total[3] += xx
    total[4] += yy
    total[5] += xy
    if enters < leaves:
        for target, column in ((starts, enters), (ends, leaves)):
            target[0, column] += 1.0
            target[1, column] += x
            target[2, column] += y
            target[3, column] += xx
            target[4, column] += yy
            target[5, column] += xy


@compiled.jit
def _interval_sums(first, last, a, b, starts, ends, total):
    """Add each pixel's count, a, b, a^2, b^2 and ab to ``total``, to column ``first`` of
    ``starts`` and to column ``last + 1`` of ``ends`` (none where ``first > last``)."""
    for pixel in range(a.size):
        _add_pixel(a[pixel], b[pixel], first[pixel], last[pixel] + 1, starts, ends, total)


@compiled.jit
def _table_interval_sums(raw_a, raw_b, table_a, table_b, rising, a, b, starts, ends, total):
    """:func:`_interval_sums` with each pixel's interval looked up in the tables of its raw
    integer values: ``[0, min(last_a, last_b)]`` on a rising line, ``[first_b, last_a]`` on
    a falling one."""
    for pixel in range(a.size):
        last_a = table_a[raw_a[pixel]]
        found_b = table_b[raw_b[pixel]]
        if rising:
            enters, leaves = 0, min(last_a, found_b) + 1
        else:
            enters, leaves = found_b, last_a + 1
        _add_pixel(a[pixel], b[pixel], enters, leaves, starts, ends, total)


def _interval_sums_numpy(first, last, a, b, starts, ends, total) -> None:
    """:func:`_interval_sums` with numpy: one ``bincount`` per sum and side."""
    columns = (np.ones(a.size), a, b, a * a, b * b, a * b)
    some = first < last + 1
    enters, leaves = first[some], last[some] + 1
    for row, values in enumerate(columns):
        total[row] += np.add.reduce(values)
        starts[row] += np.bincount(enters, values[some], minlength=starts.shape[1])
        ends[row] += np.bincount(leaves, values[some], minlength=ends.shape[1])


def _variance_and_mean(values: np.ndarray, buffer: np.ndarray) -> tuple[float, float]:
    """``np.var(values, ddof=1)`` and ``np.mean(values)`` of a 1-D float64 array, value for
    value: numpy's own steps (one pairwise sum for the mean, the squared deviations
    summed), the deviations written into ``buffer`` (which may be ``values``)."""
    count = values.size
    mean = np.add.reduce(values) / count
    np.subtract(values, mean, out=buffer)
    np.multiply(buffer, buffer, out=buffer)
    return np.add.reduce(buffer) / max(count - 1, 0), mean


class _BelowLine:
    """Pearson's r of the pixels with ``a < m/scale`` or ``b < slope*m/scale + intercept``.

    A pixel is outside that set for the candidates ``m`` up to the largest ``m`` with ``a
    >= m/scale`` and, for a rising line (slope > 0), up to the largest with ``b >=
    slope*m/scale + intercept``; for a falling line, from the smallest such ``m``: an
    interval of candidates, found with CellProfiler's own floating point comparisons. Sums
    over the outside pixels, accumulated by where that interval ends (and, falling, where
    it starts), give r for any candidate from the image's totals. Near r = 0, for a nearly
    constant or small set, or for a flat line, the set itself is formed and scipy's
    pearsonr decides, as in CellProfiler.
    """

    SMALL = 10_000  # pixels: below this the set is formed directly
    CHUNK = 2**18  # pixels summed at a time
    SIGN_MARGIN = 1e-6  # |r| above this: its sign from centred sums, else from scipy

    def __init__(
        self, a, b, slope, intercept, scale, integers=(None, None), levels=(None, None)
    ) -> None:
        self.a, self.b = a, b
        self.slope, self.intercept, self.scale = slope, intercept, scale
        self.direct = not (np.isfinite(slope) and np.isfinite(intercept) and slope != 0)
        if self.direct:
            return
        rising = slope > 0
        top = int(scale) + 2
        # Outside for m  <=>  m <= last_a(a) and (rising) m <= last_b(b) or (falling) m >=
        # first_b(b): each a table for integer images (indexed by the pixel's integer
        # value), else computed per pixel.
        finders = (self._last_a, self._last_b if rising else self._first_b)
        tables = [
            None if raw is None else find(np.arange(int(level) + 1) / level, top)
            for raw, level, find in zip(integers, levels, finders)
        ]
        raws = [None if raw is None else raw.ravel() for raw in integers]
        found = [None, None]
        # A pixel is outside for the candidates in [first, last]: its six sums (count, a,
        # b, a^2, b^2, ab) enter at ``first`` (``starts``) and leave after ``last``
        # (``ends``); the outside sums for m are the running totals up to m. A few hundred
        # thousand pixels at a time, so that the temporaries stay in the cache.
        starts, ends, running = _buffers(top)
        self.total = np.zeros(6)
        if compiled.AVAILABLE and tables[0] is not None and tables[1] is not None:
            # Both tables: looked up pixel by pixel in the compiled pass, no temporaries.
            _table_interval_sums(*raws, *tables, rising, a, b, starts, ends, self.total)
            self.outside = _running_sums(starts, ends, running)
            return
        for start in range(0, a.size, self.CHUNK):
            part = slice(start, start + self.CHUNK)
            for index, (values, raw, table, find) in enumerate(zip((a, b), raws, tables, finders)):
                found[index] = find(values[part], top) if table is None else table[raw[part]]
            if rising:  # m <= last_a and m <= last_b
                last, first = np.minimum(found[0], found[1]), np.zeros_like(found[0])
            else:  # first_b <= m <= last_a
                last, first = found
            add = _interval_sums if compiled.AVAILABLE else _interval_sums_numpy
            add(first, last, a[part], b[part], starts, ends, self.total)
        self.outside = _running_sums(starts, ends, running)

    def _last_a(self, a: np.ndarray, top: int) -> np.ndarray:
        """Largest m with ``a >= m/scale`` (-1 if none), CellProfiler's comparison: the
        line b = a (``slope * (m/scale) + 0`` is ``m/scale`` to the last bit)."""
        return _last_on_line(a, 1.0, 0.0, self.scale, top)

    def _last_b(self, b: np.ndarray, top: int) -> np.ndarray:
        """Largest m with ``b >= slope*(m/scale) + intercept`` (-1 if none)."""
        return _last_on_line(b, self.slope, self.intercept, self.scale, top)

    def _first_b(self, b: np.ndarray, top: int) -> np.ndarray:
        """Falling line: smallest m >= 0 with ``b >= slope*(m/scale) + intercept`` (top + 1
        if none up to top)."""
        return _first_on_line(b, self.slope, self.intercept, self.scale, top)

    def correlation(self, middle: float, pearsonr) -> float | None:
        """r for candidate ``middle`` (its sign exact; the search reads nothing else); None
        where CellProfiler moves the window left without an r (two pixels or fewer, or
        pearsonr refusing)."""
        if not self.direct:
            index = min(int(middle), len(self.outside[0]) - 1)
            n, sa, sb, saa, sbb, sab = (
                total - outside[index] for total, outside in zip(self.total, self.outside)
            )
            covariance = n * sab - sa * sb
            spread_a = n * saa - sa * sa
            spread_b = n * sbb - sb * sb
            if (
                n > self.SMALL
                and abs(covariance) > 1e-6 * max(abs(n * sab), abs(sa * sb))
                and spread_a > 1e-9 * n * saa
                and spread_b > 1e-9 * n * sbb
            ):
                return covariance / np.sqrt(spread_a * spread_b)
        threshold_a = middle / self.scale
        threshold_b = (self.slope * threshold_a) + self.intercept
        below = (self.a < threshold_a) | (self.b < threshold_b)
        if np.count_nonzero(below) <= 2:
            return None
        a, b = self.a[below], self.b[below]
        # Only r's sign decides: far from 0 it is the centred sums' (scipy's pearsonr costs
        # milliseconds a call in checks); near 0 or for a flat set, scipy's own.
        a_centred, b_centred = a - a.mean(), b - b.mean()
        covariance = a_centred @ b_centred
        spread = np.sqrt((a_centred @ a_centred) * (b_centred @ b_centred))
        if spread > 0 and abs(covariance) > self.SIGN_MARGIN * spread:
            return float(covariance / spread)
        try:
            r, _ = pearsonr(a, b)
        except ValueError:
            return None
        return float(r)


_BUFFERS = threading.local()


def _buffers(top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The search's sums by candidate, ``starts`` and ``ends`` (6 x (top + 3), zeroed) and
    their running totals (6 x (top + 2)), kept per thread from one field to the next: three
    fresh 3 MB arrays a field cost more in page faults than their sums."""
    kept = getattr(_BUFFERS, "arrays", None)
    if kept is None or kept[0].shape[1] != top + 3:
        kept = (np.zeros((6, top + 3)), np.zeros((6, top + 3)), np.empty((6, top + 2)))
        _BUFFERS.arrays = kept
    else:
        kept[0].fill(0.0)
        kept[1].fill(0.0)
    return kept


def _running_sums(starts: np.ndarray, ends: np.ndarray, out: np.ndarray) -> list[np.ndarray]:
    """Each row's running total of ``starts - ends`` into ``out`` (its first
    ``out.shape[1]`` values; a sequential sum, as ``np.cumsum``: the same numbers either
    way), as a list of rows."""
    if compiled.AVAILABLE:
        _compiled_running_sums(starts, ends, out)
    else:
        for row, (s, e) in enumerate(zip(starts, ends)):
            out[row] = np.cumsum(s - e)[: out.shape[1]]
    return list(out)


@compiled.jit
def _compiled_running_sums(starts, ends, out):
    for row in range(out.shape[0]):
        total = 0.0
        for column in range(out.shape[1]):
            total += starts[row, column] - ends[row, column]
            out[row, column] = total


def _line(slope: float, intercept: float, scale: float, m):
    """CellProfiler's Costes line at candidate(s) ``m``: ``slope * (m / scale) + intercept``."""
    return (slope * (m / scale)) + intercept


def _last_on_line(values, slope: float, intercept: float, scale: float, top: int) -> np.ndarray:
    """For each value, the largest m in [-1, top] with ``value >= line(m)`` (rising line; -1
    if none): an estimate, then two corrections of a step each way with CellProfiler's own
    comparison."""
    values = np.asarray(values, dtype=np.float64)
    if compiled.AVAILABLE:
        out = np.empty(values.shape, np.int64)
        _compiled_last_on_line(values.ravel(), slope, intercept, scale, top, out.ravel())
        return out
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        estimate = np.floor((values - intercept) / slope * scale)
    last = np.clip(np.nan_to_num(estimate, nan=-1), -1, top).astype(np.int64)
    for _ in range(2):  # the estimate is off by at most a step
        last = np.where(
            (values >= _line(slope, intercept, scale, last + 1)) & (last < top), last + 1, last
        )
        last = np.where(
            (values < _line(slope, intercept, scale, last)) & (last >= 0), last - 1, last
        )
    return last


def _first_on_line(values, slope: float, intercept: float, scale: float, top: int) -> np.ndarray:
    """For each value, the smallest m in [0, top + 1] with ``value >= line(m)`` (falling
    line; top + 1 if none up to top), as :func:`_last_on_line`."""
    values = np.asarray(values, dtype=np.float64)
    if compiled.AVAILABLE:
        out = np.empty(values.shape, np.int64)
        _compiled_first_on_line(values.ravel(), slope, intercept, scale, top, out.ravel())
        return out
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        estimate = np.ceil((values - intercept) / slope * scale)
    first = np.clip(np.nan_to_num(estimate, nan=top + 1), 0, top + 1).astype(np.int64)
    for _ in range(2):  # the estimate is off by at most a step
        first = np.where(
            (first > 0) & (values >= _line(slope, intercept, scale, first - 1)), first - 1, first
        )
        first = np.where(
            (first <= top) & (values < _line(slope, intercept, scale, first)), first + 1, first
        )
    return first


@compiled.jit(numpy_errors=True)
def _compiled_last_on_line(values, slope, intercept, scale, top, out):
    """:func:`_last_on_line` value by value, with the same floating point steps."""
    for index in range(values.size):
        value = values[index]
        estimate = np.floor((value - intercept) / slope * scale)
        if np.isnan(estimate) or estimate < -1:  # nan_to_num, then clip
            last = -1
        elif estimate > top:
            last = top
        else:
            last = np.int64(estimate)
        for _ in range(2):
            if value >= (slope * ((last + 1) / scale)) + intercept and last < top:
                last += 1
            if value < (slope * (last / scale)) + intercept and last >= 0:
                last -= 1
        out[index] = last


@compiled.jit(numpy_errors=True)
def _compiled_first_on_line(values, slope, intercept, scale, top, out):
    """:func:`_first_on_line` value by value, with the same floating point steps."""
    for index in range(values.size):
        value = values[index]
        estimate = np.ceil((value - intercept) / slope * scale)
        if np.isnan(estimate) or estimate > top + 1:
            first = top + 1
        elif estimate < 0:
            first = 0
        else:
            first = np.int64(estimate)
        for _ in range(2):
            if first > 0 and value >= (slope * ((first - 1) / scale)) + intercept:
                first -= 1
            if first <= top and value < (slope * (first / scale)) + intercept:
                first += 1
        out[index] = first
