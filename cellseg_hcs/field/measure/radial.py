"""MeasureObjectIntensityDistribution: radial bins and Zernike moments of the intensity.

CellProfiler 4.2.8 with its defaults (each object its own centre, 4 bins, scaled):

- the centre of an object is its pixel farthest from the object's edge (distance to the
  nearest pixel of another label or the background; the image border is not an edge);
- every pixel's distance from the centre is found by propagation within the object
  (centrosome's ``propagate``, which CellProfiler runs on all objects of a colour of a
  four-colouring at once; objects of a colour do not touch, so it is the same object by
  object; here :func:`.objects.geodesic_distances` gives its numbers for all objects);
- a pixel's bin is ``int(4 * d_centre / (d_centre + d_edge + 0.001))``;
- per bin: the fraction of the object's intensity (``FracAtD``), that over the fraction of
  its pixels (``MeanFrac``), and the coefficient of variation of the mean intensities of
  eight wedges around the centre (``RadialCV``).

When several pixels are equally far from the edge, CellProfiler takes the one scipy's
``maximum_position`` returns, which depends on how numpy's unstable sort orders ties (it
differs between numpy 1 and 2, and between processors). This takes the last of them in
raster order: what the same code gives with a stable sort.

The Zernike moments of the intensity (``ZernikeMagnitude``, ``ZernikePhase``, degree 9)
are in :mod:`.zernike`, sharing its polynomials with the shape features.
"""

from __future__ import annotations

import numpy as np

from .objects import FieldObjects, distances_to_edge, geodesic_distances
from .zernike import measure_intensity_zernikes

BINS = 4
FEATURES = ("FracAtD", "MeanFrac", "RadialCV")


def measure_radial_distribution(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``RadialDistribution_<feature>_<channel>_<bin>of4`` for every channel."""
    out: dict[str, np.ndarray] = {}
    if objects.count == 0:
        for name in objects.channels:
            for bin_ in range(1, BINS + 1):
                for feature in FEATURES:
                    out[f"RadialDistribution_{feature}_{name}_{bin_}of{BINS}"] = np.zeros(0)
        return out
    geometry = objects.cached("radial geometry", lambda: _Geometry(objects))
    for name in objects.channels:
        values = objects.values(name)[geometry.good]
        for feature, per_bin in _features(objects, geometry, values).items():
            for bin_ in range(BINS):
                out[f"RadialDistribution_{feature}_{name}_{bin_ + 1}of{BINS}"] = per_bin[:, bin_]
    return out


def measure_radial_zernikes(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``RadialDistribution_Zernike{Magnitude,Phase}_<channel>_<n>_<m>``, degree 9."""
    return measure_intensity_zernikes(objects)


class _Geometry:
    """Per object pixel (in ``objects.pixels`` order): bin and wedge, for the good pixels
    (those the propagation from the centre reached)."""

    def __init__(self, objects: FieldObjects) -> None:
        count = objects.count
        # Distance to another label or the background inside the image (centrosome's
        # distance_to_edge).
        to_edge = distances_to_edge(objects, image_border_is_edge=False)
        # The centre: scipy's maximum_position with a stable sort, the last maximum in
        # raster order.
        positions = np.arange(to_edge.size)
        farthest = objects.spread(objects.maximum(to_edge))
        centre = np.maximum.reduceat(np.where(to_edge == farthest, positions, -1), objects.starts)
        centre_row, centre_col = objects.rows[centre], objects.cols[centre]
        from_centre = geodesic_distances(objects, centre)
        self.good = from_centre >= 0  # pixels the propagation reached
        owner = objects.pixel_labels[self.good] - 1
        self.owner = owner
        distance = from_centre[self.good]
        normalized = distance / (distance + to_edge[self.good] + 0.001)
        self.bin = np.minimum((normalized * BINS).astype(np.int64), BINS)
        rows = objects.rows[self.good]
        cols = objects.cols[self.good]
        row_c, col_c = centre_row[owner], centre_col[owner]
        self.wedge = (
            (rows > row_c).astype(np.int64)
            + (cols > col_c).astype(np.int64) * 2
            + (np.abs(rows - row_c) > np.abs(cols - col_c)).astype(np.int64) * 4
        )
        self.pixels_per_bin = np.bincount(
            owner * (BINS + 1) + self.bin, minlength=count * (BINS + 1)
        ).reshape(count, BINS + 1)
        self.pixels_per_wedge = np.bincount(
            (owner * BINS + np.minimum(self.bin, BINS - 1)) * 8 + self.wedge,
            minlength=count * BINS * 8,
        ).reshape(count, BINS, 8)


def _features(objects: FieldObjects, geometry: _Geometry, values: np.ndarray) -> dict:
    count = objects.count
    owner, bin_ = geometry.owner, geometry.bin
    intensity = np.bincount(
        owner * (BINS + 1) + bin_, values, minlength=count * (BINS + 1)
    ).reshape(count, BINS + 1)
    fraction = intensity / intensity.sum(axis=1, keepdims=True)
    pixels = geometry.pixels_per_bin
    pixel_fraction = pixels / pixels.sum(axis=1, keepdims=True)
    mean_fraction = fraction / (pixel_fraction + np.finfo(float).eps)

    wedges = np.bincount(
        (owner * BINS + np.minimum(bin_, BINS - 1)) * 8 + geometry.wedge,
        values,
        minlength=count * BINS * 8,
    ).reshape(count, BINS, 8)
    counted = geometry.pixels_per_wedge
    present = counted > 0
    means = np.where(present, wedges / np.where(present, counted, 1), 0.0)
    n = present.sum(axis=2)
    mean = means.sum(axis=2) / np.maximum(n, 1)
    spread = np.sqrt(
        np.where(present, (means - mean[..., None]) ** 2, 0.0).sum(axis=2) / np.maximum(n, 1)
    )
    # numpy.ma's division: where the mean is (next to) 0 the result keeps the numerator.
    tiny = np.finfo(float).tiny
    masked = np.abs(spread) * tiny >= np.abs(mean)
    cv = np.where(masked, spread, spread / np.where(masked, 1.0, mean))
    cv[n == 0] = 0
    return {"FracAtD": fraction[:, :BINS], "MeanFrac": mean_fraction[:, :BINS], "RadialCV": cv}
