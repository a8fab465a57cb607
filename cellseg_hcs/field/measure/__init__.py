"""Per-object measurements with CellProfiler's own names, computed by cp_measure.

cp_measure is the CellProfiler team's library of CellProfiler's measurement code. Its
results are renamed here to exactly the columns CellProfiler's ExportToSpreadsheet writes
for an object called ``Nuclei`` measured on an image called ``DNA``:
``Nuclei_AreaShape_Area``, ``Nuclei_Intensity_MeanIntensity_DNA``,
``Nuclei_Texture_Contrast_DNA_3_00_256``, ``Nuclei_Location_Center_X``,
``Nuclei_Number_Object_Number``, and the row keys ``Metadata_Plate``, ``Metadata_Well``,
``Metadata_Site`` and ``ObjectNumber``, so pycytominer reads the tables as they are.

Measurement groups live in :data:`FEATURE_GROUPS` (a registry, as cp_measure's own
``bulk`` module is); the sets a user picks from are lists of group names in
:data:`FEATURE_SETS`.

Pixels are measured on CellProfiler's scale: integer images are divided by their dtype's
maximum (a uint16 image becomes 0..1 as CellProfiler's NamesAndTypes loads it), float
images are used as they are.

Examples
--------
>>> labels = np.zeros((32, 32), np.uint16); labels[4:12, 4:12] = 1; labels[18:28, 16:30] = 2
>>> dna = np.full((32, 32), 1000, np.uint16)
>>> table = measure_objects(labels, {"DNA": dna}, features="minimal")
>>> table["Nuclei_AreaShape_Area"].tolist()
[64.0, 140.0]
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import SettingError
from ..postprocess import touching_pairs

TEXTURE_SCALE = 3
TEXTURE_GRAY_LEVELS = 256

Measurements = dict[str, np.ndarray]


@dataclass(frozen=True)
class FeatureGroup:
    """One kind of measurement: what it is, and the function that makes its columns.

    ``measure(labels, channels)`` gets contiguous labels ``1..N`` and ``{name: plane}``
    on CellProfiler's 0..1 scale, and returns ``{column without object prefix: values}``
    with one value per object.
    """

    description: str
    measure: Callable[[np.ndarray, Mapping[str, np.ndarray]], Measurements]


# ----------------------------------------------------------------------------- groups


def _location(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
    # CellProfiler's Identify modules: the mean of each object's pixel coordinates.
    count = int(labels.max())
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)[1:].astype(np.float64)
    rows, cols = np.indices(labels.shape)
    y = np.bincount(flat, weights=rows.ravel(), minlength=count + 1)[1:] / area
    x = np.bincount(flat, weights=cols.ravel(), minlength=count + 1)[1:] / area
    return {
        "Location_Center_X": x,
        "Location_Center_Y": y,
        "Number_Object_Number": np.arange(1, count + 1),
    }


def _core(name: str, **options) -> Callable:
    from cp_measure.bulk import get_core_measurements

    legacy = options.pop("legacy", False)
    return functools.partial(get_core_measurements(legacy=legacy, sanitize=False)[name], **options)


def _shape(advanced: bool) -> Callable:
    def measure(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
        # new_features=False: only the measurements CellProfiler 4 makes.
        values = _core("sizeshape", calculate_advanced=advanced, new_features=False)(labels, None)
        values.update(_core("feret")(labels, None))
        return {f"AreaShape_{key}": value for key, value in values.items()}

    return measure


def _zernike(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
    return {f"AreaShape_{key}": value for key, value in _core("zernike")(labels, None).items()}


def _per_channel(name: str, rename: Callable[[str, str], str], **options) -> Callable:
    def measure(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
        out: Measurements = {}
        for channel, pixels in channels.items():
            with warnings.catch_warnings():  # empty or flat objects give NaN, as in CellProfiler
                warnings.simplefilter("ignore", RuntimeWarning)
                values = _core(name, **options)(labels, pixels)
            out.update({rename(key, channel): value for key, value in values.items()})
        return out

    return measure


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


def _texture_pixels(pixels: np.ndarray) -> np.ndarray:
    # cp_measure quantizes with img_as_ubyte, which refuses floats outside [0, 1].
    return np.clip(pixels, 0.0, 1.0)


def _texture(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
    clipped = {name: _texture_pixels(pixels) for name, pixels in channels.items()}
    return _per_channel(
        "texture", _texture_name, scale=TEXTURE_SCALE, gray_levels=TEXTURE_GRAY_LEVELS
    )(labels, clipped)


def _neighbors(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
    """MeasureObjectNeighbors with the objects as their own neighbours, "expand until adjacent".

    Computed here rather than by cp_measure 0.3, whose version of this case counts each
    object as its own closest neighbour; this one agrees with CellProfiler 4.2.8 to 1e-12
    (tests/test_features_cellprofiler.py). ``PercentTouching`` still comes from cp_measure,
    which gets it right. As in CellProfiler, a missing closest or second-closest object is
    number 0 at distance 0.
    """
    from scipy import ndimage as ndi

    count = int(labels.max())
    zeros = np.zeros(count)
    out = {
        f"Neighbors_{name}_Expanded": zeros.copy()
        for name in (
            "NumberOfNeighbors",
            "FirstClosestObjectNumber",
            "FirstClosestDistance",
            "SecondClosestObjectNumber",
            "SecondClosestDistance",
            "AngleBetweenNeighbors",
            "PercentTouching",
        )
    }
    if count < 2:
        return out
    # Every pixel takes the label of its nearest object; objects whose grown regions share
    # an edge (4-connected) are neighbours.
    nearest = ndi.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    grown = labels[tuple(nearest)]
    out["Neighbors_NumberOfNeighbors_Expanded"] = np.bincount(
        np.concatenate(touching_pairs(grown)), minlength=count + 1
    )[1:].astype(np.float64)

    index = np.arange(1, count + 1)
    rows, cols = np.indices(labels.shape)
    y = np.asarray(ndi.mean(rows, labels, index))
    x = np.asarray(ndi.mean(cols, labels, index))
    distance = np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :])
    np.fill_diagonal(distance, np.inf)
    order = np.argsort(distance, axis=1, kind="stable")
    first = order[:, 0]
    out["Neighbors_FirstClosestObjectNumber_Expanded"] = first + 1.0
    out["Neighbors_FirstClosestDistance_Expanded"] = distance[index - 1, first]
    if count > 2:
        second = order[:, 1]
        out["Neighbors_SecondClosestObjectNumber_Expanded"] = second + 1.0
        out["Neighbors_SecondClosestDistance_Expanded"] = distance[index - 1, second]
        to_first = np.stack([x[first] - x, y[first] - y], axis=1)
        to_second = np.stack([x[second] - x, y[second] - y], axis=1)
        cosine = (to_first * to_second).sum(axis=1) / (
            np.linalg.norm(to_first, axis=1) * np.linalg.norm(to_second, axis=1)
        )
        out["Neighbors_AngleBetweenNeighbors_Expanded"] = np.degrees(
            np.arccos(np.clip(cosine, -1.0, 1.0))
        )

    from cp_measure.bulk import get_multimask_measurements

    touching = get_multimask_measurements()["neighbors"](labels, labels)
    out["Neighbors_PercentTouching_Expanded"] = np.asarray(
        touching["Neighbors_PercentTouching_Expanded"], dtype=np.float64
    )
    return out


def _correlation(labels: np.ndarray, channels: Mapping[str, np.ndarray]) -> Measurements:
    """CellProfiler's MeasureColocalization names, for every pair of channels."""
    from cp_measure.bulk import get_correlation_measurements

    functions = get_correlation_measurements(sanitize=False)
    out: Measurements = {}
    for first, second in itertools.combinations(channels, 2):
        a, b = channels[first], channels[second]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pearson = functions["pearson"](a, b, labels)
            # Pixels are already 0..1; scale_max sets the Costes search grid (16-bit steps).
            costes = functions["costes"](a, b, labels, scale_max=65535)
            manders = functions["manders_fold"](a, b, labels)
            rwc = functions["rwc"](a, b, labels)
        out[f"Correlation_Correlation_{first}_{second}"] = pearson["Correlation_Pearson"]
        out[f"Correlation_Slope_{first}_{second}"] = pearson["Correlation_Slope"]
        for name, values in (("Costes", costes), ("Manders", manders), ("RWC", rwc)):
            out[f"Correlation_{name}_{first}_{second}"] = values[f"Correlation_{name}_1"]
            out[f"Correlation_{name}_{second}_{first}"] = values[f"Correlation_{name}_2"]
    return {key: np.asarray(value, dtype=np.float64) for key, value in out.items()}


FEATURE_GROUPS: dict[str, FeatureGroup] = {
    "location": FeatureGroup("object centre and number (Identify modules)", _location),
    "shape": FeatureGroup("MeasureObjectSizeShape, standard features + Feret", _shape(False)),
    "shape_advanced": FeatureGroup("MeasureObjectSizeShape with moments and inertia", _shape(True)),
    "zernike": FeatureGroup("MeasureObjectSizeShape Zernike shape features", _zernike),
    # legacy=True: CellProfiler's own quartile convention (n*q), not numpy's ((n-1)*q).
    "intensity": FeatureGroup(
        "MeasureObjectIntensity, each channel",
        _per_channel("intensity", _append_channel, legacy=True),
    ),
    "texture": FeatureGroup(
        f"MeasureTexture at scale {TEXTURE_SCALE}, {TEXTURE_GRAY_LEVELS} gray levels, each channel",
        _texture,
    ),
    "neighbors": FeatureGroup("MeasureObjectNeighbors, expanded until adjacent", _neighbors),
    "granularity": FeatureGroup(
        "MeasureGranularity, each channel", _per_channel("granularity", _append_channel)
    ),
    "radial_distribution": FeatureGroup(
        "MeasureObjectIntensityDistribution, each channel",
        _per_channel("radial_distribution", _radial_name),
    ),
    "radial_zernikes": FeatureGroup(
        "MeasureObjectIntensityDistribution Zernikes, each channel",
        _per_channel("radial_zernikes", _radial_name),
    ),
    "correlation": FeatureGroup(
        "MeasureColocalization between every pair of channels", _correlation
    ),
}

FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "minimal": ("location", "shape", "intensity"),
    "default": ("location", "shape", "intensity", "texture", "neighbors"),
    "full": (
        "location",
        "shape_advanced",
        "zernike",
        "intensity",
        "texture",
        "neighbors",
        "granularity",
        "radial_distribution",
        "radial_zernikes",
        "correlation",
    ),
}


def feature_groups(features: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The groups of a set name (``minimal``, ``default``, ``full``) or of a list of groups."""
    if isinstance(features, str):
        if features not in FEATURE_SETS:
            raise SettingError(f"feature set {features!r} is not one of {', '.join(FEATURE_SETS)}.")
        return FEATURE_SETS[features]
    unknown = [g for g in features if g not in FEATURE_GROUPS]
    if unknown:
        raise SettingError(
            f"feature group {unknown[0]!r} is not one of {', '.join(FEATURE_GROUPS)}."
        )
    return tuple(dict.fromkeys(("location", *features)))


# ----------------------------------------------------------------------------- measuring


def cellprofiler_scale(pixels: np.ndarray) -> np.ndarray:
    """Pixels as CellProfiler loads them: integers over their dtype's maximum, as float64."""
    pixels = np.asarray(pixels)
    if pixels.dtype.kind in "ui":
        return pixels.astype(np.float64) / np.iinfo(pixels.dtype).max
    if pixels.dtype.kind == "b":
        return pixels.astype(np.float64)
    return pixels.astype(np.float64, copy=False)


def measure_objects(
    labels: np.ndarray,
    channels: Mapping[str, np.ndarray],
    *,
    object_name: str = "Nuclei",
    features: str | list[str] | tuple[str, ...] = "default",
    metadata: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """One row per labelled object, with CellProfiler's column names.

    Parameters
    ----------
    labels:
        2-D label image, 0 = background, objects numbered ``1..N`` (gaps are closed, and
        ``ObjectNumber`` is the object's number after closing them).
    channels:
        ``{channel name: 2-D plane}`` of the same shape, raw (any real dtype).
    object_name:
        The prefix of every measurement column (``Nuclei_AreaShape_Area``).
    features:
        A set from :data:`FEATURE_SETS` or a list of groups from :data:`FEATURE_GROUPS`.
    metadata:
        ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site`` (and any other
        ``Metadata_*``) values repeated on every row.

    Returns
    -------
    pandas.DataFrame
        The metadata columns, ``ObjectNumber``, then the measurements. A field with no
        objects gives an empty table with the same columns.
    """
    groups = feature_groups(features)
    labels = _contiguous(np.asarray(labels))
    planes = {name: cellprofiler_scale(plane) for name, plane in channels.items()}
    for name, plane in planes.items():
        if plane.shape != labels.shape:
            raise SettingError(
                f"channel {name!r} has shape {plane.shape}, but the labels have {labels.shape}."
            )
    metadata = dict(metadata or {})
    columns = feature_columns(object_name, tuple(planes), groups, tuple(metadata))
    count = int(labels.max())
    if count == 0:
        return _empty_table(columns, metadata)
    values: Measurements = {}
    for group in groups:
        values.update(FEATURE_GROUPS[group].measure(labels, planes))
    table = pd.DataFrame(
        {f"{object_name}_{key}": np.asarray(v, dtype=np.float64) for key, v in values.items()}
    )
    for key, value in metadata.items():
        table[key] = value
    table["ObjectNumber"] = np.arange(1, count + 1, dtype=np.int64)
    number = f"{object_name}_Number_Object_Number"
    table[number] = table[number].astype(np.int64)
    return table[list(columns)]


def _contiguous(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size and ids[-1] != ids.size:
        lookup = np.zeros(int(ids[-1]) + 1, dtype=np.int32)
        lookup[ids] = np.arange(1, ids.size + 1)
        return lookup[labels]
    return labels.astype(np.int32, copy=False)


@functools.lru_cache(maxsize=32)
def feature_columns(
    object_name: str,
    channels: tuple[str, ...],
    groups: tuple[str, ...],
    metadata: tuple[str, ...] = ("Metadata_Plate", "Metadata_Well", "Metadata_Site"),
) -> tuple[str, ...]:
    """The columns a table has for these channels and groups, in order.

    They are found by measuring two small synthetic objects, so an empty field's table has
    exactly the columns a full one has.
    """
    labels = np.zeros((48, 48), np.int32)
    labels[4:20, 4:22] = 1
    labels[26:44, 24:44] = 2
    ramp = np.linspace(0.1, 0.9, labels.size).reshape(labels.shape)
    planes = {name: np.roll(ramp, index, axis=1) for index, name in enumerate(channels)}
    names: list[str] = []
    for group in groups:
        names += [f"{object_name}_{key}" for key in FEATURE_GROUPS[group].measure(labels, planes)]
    leading = [*metadata, "ObjectNumber"]
    first = [
        f"{object_name}_Number_Object_Number",
        f"{object_name}_Location_Center_X",
        f"{object_name}_Location_Center_Y",
    ]
    rest = [n for n in names if n not in first]
    return tuple(leading + [n for n in first if n in names] + rest)


def _empty_table(columns: tuple[str, ...], metadata: Mapping[str, object]) -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in columns})
    for key, value in metadata.items():
        table[key] = pd.Series(dtype=type(value) if isinstance(value, str) else np.int64)
    for column in columns:
        if column == "ObjectNumber" or column.endswith("_Number_Object_Number"):
            table[column] = table[column].astype(np.int64)
    return table
