"""MeasureObjectIntensity: every object's intensity statistics, all objects at once.

As CellProfiler 4.2.8 for each channel: integrated, mean, standard deviation (of the
population), minimum and maximum intensity; the same over the object's edge (its pixels
with a 4-neighbour of another value inside the image); the quartiles and median by
CellProfiler's rule (the value at ``n * q`` in the sorted pixels, linearly interpolated
with the next, not numpy's ``(n - 1) * q``); the median absolute deviation by the same rule;
the intensity-weighted centre and its distance from the object's centre (mass displacement);
and the brightest pixel's position. Of several equally bright pixels this takes the last in
raster order (CellProfiler's choice with a stable sort; its own depends on numpy's unstable
sort, see tests/cellprofiler_reference.py). A 2-D image has ``Z`` positions 0.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .objects import FieldObjects


def measure_intensity(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``Intensity_<feature>_<channel>`` and ``Location_<feature>_<channel>`` columns."""
    edges = objects.cached("inner edges", lambda: _Edges(objects))
    out: dict[str, np.ndarray] = {}
    for name in objects.channels:
        raw = objects.integers[name]
        raw = None if raw is None else raw.ravel()[objects.pixels]
        values = _intensity(objects, edges, objects.values(name), raw, objects.scales[name])
        out.update({f"{key}_{name}": value for key, value in values.items()})
    return out


class _Edges:
    """The objects' inner boundary pixels (skimage's ``find_boundaries(mode="inner")``)."""

    def __init__(self, objects: FieldObjects) -> None:
        self.objects = objects

    @cached_property
    def mask(self) -> np.ndarray:
        """Which of ``objects.pixels`` are on the edge."""
        labels = self.objects.labels
        differs = np.zeros(labels.shape, bool)
        for axis in (0, 1):
            step = np.diff(labels, axis=axis) != 0
            before = [slice(None)] * 2
            after = [slice(None)] * 2
            before[axis], after[axis] = slice(None, -1), slice(1, None)
            differs[tuple(before)] |= step
            differs[tuple(after)] |= step
        return differs.ravel()[self.objects.pixels]

    @cached_property
    def owner(self) -> np.ndarray:
        return self.objects.pixel_labels[self.mask] - 1

    @cached_property
    def counts(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=self.objects.count)

    @cached_property
    def starts(self) -> np.ndarray:
        return np.concatenate(([0], np.cumsum(self.counts)[:-1]))


def _intensity(
    objects: FieldObjects,
    edges: _Edges,
    values: np.ndarray,
    raw: np.ndarray | None = None,
    scale: float | None = None,
) -> dict:
    """``raw``: the integer pixels the values are over ``scale`` (at ``objects.pixels``),
    if they came as integers: then they give the orders (radix sorts of small integers)."""
    count = objects.count
    if count == 0:
        names = [
            *(f"Intensity_{k}" for k in _INTENSITY_NAMES),
            *(f"Location_{k}" for k in _LOCATION_NAMES),
        ]
        return {name: np.zeros(0) for name in names}
    area = objects.areas.astype(np.float64)
    integrated = objects.sum(values)
    mean = integrated / area
    std = np.sqrt(objects.sum((values - objects.spread(mean)) ** 2) / area)
    minimum = objects.minimum(values)
    maximum = objects.maximum(values)
    # The brightest pixel: the last of the object's maxima in raster order.
    positions = np.arange(values.size)
    at_maximum = np.where(values == objects.spread(maximum), positions, -1)
    brightest = np.maximum.reduceat(at_maximum, objects.starts)
    rows = objects.rows.astype(np.float64)
    cols = objects.cols.astype(np.float64)
    centre_x, centre_y = objects.mean(cols), objects.mean(rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        mass_x = objects.sum(cols * values) / integrated
        mass_y = objects.sum(rows * values) / integrated
        mass_z = 0.0 * integrated / integrated
    displacement = np.sqrt((centre_x - mass_x) ** 2 + (centre_y - mass_y) ** 2 + mass_z**2)

    order = _sorted_within_objects(objects, values if raw is None else raw)
    lower, median, upper = (
        _quantile(objects, values[order], fraction) for fraction in (0.25, 0.5, 0.75)
    )
    deviations = np.abs(values - objects.spread(median))
    if raw is None:
        order = _sorted_within_objects(objects, deviations)
    else:
        # The median is a pixel value or the mean of two, so 2 * median * scale is an
        # integer m and |2 raw - m| orders the deviations (equal ones may differ in the last
        # bit). Within an object they share m's parity: halved, they fit in 16 bits.
        twice = np.rint(2 * median * scale).astype(np.int64)
        distance = np.abs(2 * raw.astype(np.int64) - objects.spread(twice)) // 2
        order = _sorted_within_objects(objects, distance.astype(np.uint16))
    mad = _quantile(objects, deviations[order], 0.5)

    edge_values = values[edges.mask]
    edge_owner = edges.owner
    with np.errstate(divide="ignore", invalid="ignore"):
        edge_count = edges.counts.astype(np.float64)
        edge_integrated = np.bincount(edge_owner, edge_values, minlength=count)
        edge_mean = edge_integrated / edge_count
        edge_std = np.sqrt(
            np.bincount(edge_owner, (edge_values - edge_mean[edge_owner]) ** 2, minlength=count)
            / edge_count
        )
    edge_minimum, edge_maximum = np.zeros(count), np.zeros(count)
    has_edge = edges.counts > 0
    if edge_values.size:
        present = edges.starts[has_edge]
        edge_minimum[has_edge] = np.minimum.reduceat(edge_values, present)
        edge_maximum[has_edge] = np.maximum.reduceat(edge_values, present)
    return {
        "Intensity_IntegratedIntensity": integrated,
        "Intensity_MeanIntensity": mean,
        "Intensity_StdIntensity": std,
        "Intensity_MinIntensity": minimum,
        "Intensity_MaxIntensity": maximum,
        "Intensity_IntegratedIntensityEdge": edge_integrated,
        "Intensity_MeanIntensityEdge": edge_mean,
        "Intensity_StdIntensityEdge": edge_std,
        "Intensity_MinIntensityEdge": edge_minimum,
        "Intensity_MaxIntensityEdge": edge_maximum,
        "Intensity_MassDisplacement": displacement,
        "Intensity_LowerQuartileIntensity": lower,
        "Intensity_MedianIntensity": median,
        "Intensity_MADIntensity": mad,
        "Intensity_UpperQuartileIntensity": upper,
        "Location_CenterMassIntensity_X": mass_x,
        "Location_CenterMassIntensity_Y": mass_y,
        "Location_CenterMassIntensity_Z": mass_z,
        "Location_MaxIntensity_X": cols[brightest],
        "Location_MaxIntensity_Y": rows[brightest],
        "Location_MaxIntensity_Z": np.zeros(count),
    }


_INTENSITY_NAMES = (
    "IntegratedIntensity",
    "MeanIntensity",
    "StdIntensity",
    "MinIntensity",
    "MaxIntensity",
    "IntegratedIntensityEdge",
    "MeanIntensityEdge",
    "StdIntensityEdge",
    "MinIntensityEdge",
    "MaxIntensityEdge",
    "MassDisplacement",
    "LowerQuartileIntensity",
    "MedianIntensity",
    "MADIntensity",
    "UpperQuartileIntensity",
)
_LOCATION_NAMES = (
    "CenterMassIntensity_X",
    "CenterMassIntensity_Y",
    "CenterMassIntensity_Z",
    "MaxIntensity_X",
    "MaxIntensity_Y",
    "MaxIntensity_Z",
)


def _sorted_within_objects(objects: FieldObjects, values: np.ndarray) -> np.ndarray:
    """An order of ``objects.pixels`` by object, then by value (integers of 16 bits or
    fewer: numpy's stable sort of them is a radix sort)."""
    small = values.dtype.kind in "ui" and values.dtype.itemsize <= 2
    by_value = np.argsort(values, kind="stable" if small else None)
    owner = objects.pixel_labels[by_value]
    key = owner.astype(np.uint16) if objects.count < 2**16 else owner
    return by_value[np.argsort(key, kind="stable")]


def _quantile(objects: FieldObjects, ordered: np.ndarray, fraction: float) -> np.ndarray:
    """CellProfiler's quantile of each object's sorted values (``ordered``)."""
    areas, starts = objects.areas, objects.starts
    position = starts.astype(float) + areas * fraction
    weight = position - np.floor(position)
    index = position.astype(np.int64)
    between = index < starts + areas - 1
    following = np.minimum(index + 1, ordered.size - 1)
    return np.where(
        between, ordered[index] * (1 - weight) + ordered[following] * weight, ordered[index]
    )
