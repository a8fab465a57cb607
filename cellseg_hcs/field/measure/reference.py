"""The feature groups as cp_measure computes them, object by object.

cp_measure is the CellProfiler team's library of CellProfiler's measurement code, called
one object at a time. It is the reference the vectorized groups are checked against in
tests where it agrees with CellProfiler 4.2.8, and the baseline of
``benchmarks/measure_speed.py``. Its results are renamed to the package's columns.

Where cp_measure 0.3 and CellProfiler 4.2.8 differ (so these functions are not used as a
reference there): radial distribution (cp_measure finds each object's centre in its own
crop), correlation (cp_measure thresholds Costes per object, CellProfiler on the whole
image; CellProfiler's RWC ranks pixels over all objects; cp_measure makes no Overlap or K),
texture of objects whose pixels are all 0 after quantization, and neighbours (cp_measure
counts an object as its own closest neighbour).
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable

import numpy as np

from .objects import FieldObjects

Measurements = dict[str, np.ndarray]


def _core(name: str, **options) -> Callable:
    from cp_measure.bulk import get_core_measurements

    legacy = options.pop("legacy", False)
    return functools.partial(get_core_measurements(legacy=legacy, sanitize=False)[name], **options)


def shape(objects: FieldObjects, advanced: bool = False) -> Measurements:
    """MeasureObjectSizeShape without Zernikes, + Feret diameters."""
    # new_features=False: only the measurements CellProfiler 4 makes.
    values = _core("sizeshape", calculate_advanced=advanced, new_features=False)(
        objects.labels, None
    )
    values.update(_core("feret")(objects.labels, None))
    return {f"AreaShape_{key}": value for key, value in values.items()}


def zernike(objects: FieldObjects) -> Measurements:
    """MeasureObjectSizeShape's Zernike shape features."""
    values = _core("zernike")(objects.labels, None)
    return {f"AreaShape_{key}": value for key, value in values.items()}


def _per_channel(
    objects: FieldObjects, name: str, rename: Callable[[str, str], str], **options
) -> Measurements:
    out: Measurements = {}
    for channel, pixels in objects.channels.items():
        with warnings.catch_warnings():  # empty or flat objects give NaN, as in CellProfiler
            warnings.simplefilter("ignore", RuntimeWarning)
            values = _core(name, **options)(objects.labels, pixels)
        out.update({rename(key, channel): value for key, value in values.items()})
    return out


def _append_channel(key: str, channel: str) -> str:
    """``Intensity_MeanIntensity`` -> ``Intensity_MeanIntensity_DNA``."""
    return f"{key}_{channel}"


def _texture_name(key: str, channel: str) -> str:
    """``Contrast_3_00_256`` -> ``Texture_Contrast_DNA_3_00_256``."""
    feature, _, scale = key.partition("_")
    return f"Texture_{feature}_{channel}_{scale}"


def _radial_name(key: str, channel: str) -> str:
    """``RadialDistribution_FracAtD_1of4`` -> ``RadialDistribution_FracAtD_DNA_1of4``;
    ``RadialDistribution_ZernikeMagnitude_0_0`` -> ``..._ZernikeMagnitude_DNA_0_0``."""
    category, feature, rest = key.split("_", 2)
    return f"{category}_{feature}_{channel}_{rest}"


def intensity(objects: FieldObjects) -> Measurements:
    """MeasureObjectIntensity; ``legacy``: CellProfiler's quartiles (n*q), not numpy's."""
    return _per_channel(objects, "intensity", _append_channel, legacy=True)


def texture(objects: FieldObjects, scale: int = 3, gray_levels: int = 256) -> Measurements:
    """MeasureTexture; cp_measure's ``img_as_ubyte`` refuses floats outside [0, 1]."""
    clipped = FieldObjects(
        objects.labels, {k: np.clip(v, 0.0, 1.0) for k, v in objects.channels.items()}
    )
    return _per_channel(clipped, "texture", _texture_name, scale=scale, gray_levels=gray_levels)


def granularity(objects: FieldObjects) -> Measurements:
    """MeasureGranularity within objects."""
    return _per_channel(objects, "granularity", _append_channel)


def radial_distribution(objects: FieldObjects) -> Measurements:
    """MeasureObjectIntensityDistribution's bins (centres found per object)."""
    return _per_channel(objects, "radial_distribution", _radial_name)


def radial_zernikes(objects: FieldObjects) -> Measurements:
    """MeasureObjectIntensityDistribution's Zernike magnitudes and phases."""
    return _per_channel(objects, "radial_zernikes", _radial_name)


def neighbors(objects: FieldObjects) -> Measurements:
    """MeasureObjectNeighbors, expand until adjacent (cp_measure's own version)."""
    from cp_measure.bulk import get_multimask_measurements

    values = get_multimask_measurements()["neighbors"](objects.labels, objects.labels)
    return {key: np.asarray(value, dtype=np.float64) for key, value in values.items()}


def correlation(objects: FieldObjects) -> Measurements:
    """MeasureColocalization per object, as cp_measure computes it (see the module note)."""
    from cp_measure.bulk import get_correlation_measurements

    functions = get_correlation_measurements(sanitize=False)
    out: Measurements = {}
    labels = objects.labels
    for first, second in itertools.combinations(objects.channels, 2):
        a, b = objects.channels[first], objects.channels[second]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pearson = functions["pearson"](a, b, labels)
            costes = functions["costes"](a, b, labels, scale_max=65535)
            manders = functions["manders_fold"](a, b, labels)
            rwc = functions["rwc"](a, b, labels)
        out[f"Correlation_Correlation_{first}_{second}"] = pearson["Correlation_Pearson"]
        for name, values in (("Costes", costes), ("Manders", manders), ("RWC", rwc)):
            out[f"Correlation_{name}_{first}_{second}"] = values[f"Correlation_{name}_1"]
            out[f"Correlation_{name}_{second}_{first}"] = values[f"Correlation_{name}_2"]
    return {key: np.asarray(value, dtype=np.float64) for key, value in out.items()}


GROUPS: dict[str, Callable[[FieldObjects], Measurements]] = {
    "shape": shape,
    "shape_advanced": functools.partial(shape, advanced=True),
    "zernike": zernike,
    "intensity": intensity,
    "texture": texture,
    "neighbors": neighbors,
    "granularity": granularity,
    "radial_distribution": radial_distribution,
    "radial_zernikes": radial_zernikes,
    "correlation": correlation,
}
