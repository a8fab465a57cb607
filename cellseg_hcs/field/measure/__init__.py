"""Per-object measurements with CellProfiler's own names and CellProfiler 4.2.8's values.

Every group measures all objects of a field at once (label-indexed reductions over the object
pixels sorted once by label, one pass per co-occurrence direction, one distance transform of
all objects' boxes side by side...), one module per CellProfiler module: :mod:`.location`,
:mod:`.shape`, :mod:`.zernike`, :mod:`.intensity`, :mod:`.texture`, :mod:`.neighbors`,
:mod:`.granularity`, :mod:`.radial`, :mod:`.correlation`; what they share is kept on one
:class:`~.objects.FieldObjects` per call. Each module's docstring says which CellProfiler rule
it follows where the rule is not obvious; tests/test_features_cellprofiler.py holds every
column to CellProfiler 4.2.8 itself. cp_measure (the CellProfiler team's object-by-object
library) stays as the reference in tests and benchmarks (:mod:`.reference`).

Columns are exactly those CellProfiler's ExportToSpreadsheet writes for an object called
``Nuclei`` measured on an image called ``DNA``: ``Nuclei_AreaShape_Area``,
``Nuclei_Intensity_MeanIntensity_DNA``, ``Nuclei_Texture_Contrast_DNA_3_00_256``,
``Nuclei_Location_Center_X``, ``Nuclei_Number_Object_Number``, and the row keys
``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site`` and ``ObjectNumber``, so pycytominer
reads the tables as they are.

Measurement groups live in :data:`FEATURE_GROUPS` (a registry); the sets a user picks from
are lists of group names in :data:`FEATURE_SETS`.

Pixels are measured on CellProfiler's scale: integer images are divided by their dtype's
maximum (a uint16 image becomes 0..1 as CellProfiler's NamesAndTypes loads it, with 65535 as
the image's scale, which MeasureColocalization's Costes search uses), float images are used
as they are (no scale: CellProfiler's default of 255).

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
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import SettingError
from .correlation import measure_correlation
from .granularity import measure_granularity
from .intensity import measure_intensity
from .location import measure_location
from .neighbors import measure_neighbors
from .objects import FieldObjects, numbered
from .radial import measure_radial_distribution, measure_radial_zernikes
from .shape import measure_shape
from .texture import LEVELS as TEXTURE_GRAY_LEVELS
from .texture import measure_texture
from .zernike import measure_zernike

TEXTURE_SCALE = 3
METADATA = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")  # a plate run's row keys

Measurements = dict[str, np.ndarray]


@dataclass(frozen=True)
class FeatureGroup:
    """One kind of measurement: what it is, and the function that makes its columns.

    ``measure(objects)`` gets the field's :class:`~.objects.FieldObjects` (labels ``1..N``,
    channels on CellProfiler's 0..1 scale) and returns ``{column without object prefix:
    values}`` with one value per object. ``cost``: its time on a typical field against the
    others' (a profile of mnfinder fields), for each channel when ``per`` is ``"channel"``
    and each pair of channels when it is ``"pair"``, so that groups measured in threads
    start the costliest first.
    """

    description: str
    measure: Callable[[FieldObjects], Measurements]
    cost: int = 1
    per: str = "field"

    def cost_for(self, channels: int) -> float:
        """The group's cost on a field of this many channels."""
        times = {"field": 1, "channel": channels, "pair": channels * (channels - 1) / 2}
        return self.cost * times[self.per]


# ----------------------------------------------------------------------------- groups


FEATURE_GROUPS: dict[str, FeatureGroup] = {
    "location": FeatureGroup("object centre and number (Identify modules)", measure_location, 1),
    "shape": FeatureGroup(
        "MeasureObjectSizeShape, standard features + Feret",
        functools.partial(measure_shape, advanced=False),
        2,
    ),
    "shape_advanced": FeatureGroup(
        "MeasureObjectSizeShape with moments and inertia",
        functools.partial(measure_shape, advanced=True),
        4,
    ),
    "zernike": FeatureGroup("MeasureObjectSizeShape Zernike shape features", measure_zernike, 6),
    "intensity": FeatureGroup(
        "MeasureObjectIntensity, each channel", measure_intensity, 2, "channel"
    ),
    "texture": FeatureGroup(
        f"MeasureTexture at scale {TEXTURE_SCALE}, {TEXTURE_GRAY_LEVELS} gray levels, each channel",
        functools.partial(measure_texture, scale=TEXTURE_SCALE),
        3,
        "channel",
    ),
    "neighbors": FeatureGroup(
        "MeasureObjectNeighbors, expanded until adjacent", measure_neighbors, 5
    ),
    "granularity": FeatureGroup(
        "MeasureGranularity, each channel", measure_granularity, 5, "channel"
    ),
    "radial_distribution": FeatureGroup(
        "MeasureObjectIntensityDistribution, each channel",
        measure_radial_distribution,
        3,
        "channel",
    ),
    "radial_zernikes": FeatureGroup(
        "MeasureObjectIntensityDistribution Zernikes, each channel", measure_radial_zernikes, 4
    ),
    "correlation": FeatureGroup(
        "MeasureColocalization between every pair of channels", measure_correlation, 7, "pair"
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
        scaled = pixels.astype(np.float64)
        scaled /= np.iinfo(pixels.dtype).max
        return scaled
    if pixels.dtype.kind == "b":
        return pixels.astype(np.float64)
    return pixels.astype(np.float64, copy=False)


def cellprofiler_image_scale(pixels: np.ndarray) -> float | None:
    """The scale CellProfiler records for an image: its integer dtype's maximum, else None."""
    kind = np.asarray(pixels).dtype
    return float(np.iinfo(kind).max) if kind.kind in "ui" else None


def measure_objects(
    labels: np.ndarray,
    channels: Mapping[str, np.ndarray],
    *,
    object_name: str = "Nuclei",
    features: str | list[str] | tuple[str, ...] = "default",
    metadata: Mapping[str, object] | None = None,
    images: dict | None = None,
    threads: int = 1,
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
    images:
        An empty dict to pass again, with the same ``channels``, for every object set of the
        field (nuclei, cells, cytoplasm): what depends on the images alone (granularity's
        reconstructions, Costes' thresholds, the channels scaled as CellProfiler's) is then
        computed once. One dict per field.
    threads:
        Measure the groups in this many threads at once (the compiled kernels and numpy's
        large operations release the GIL); the values are the same for any number.

    Returns
    -------
    pandas.DataFrame
        The metadata columns, ``ObjectNumber``, then the measurements. A field with no
        objects gives an empty table with the same columns.
    """
    groups = feature_groups(features)
    labels = numbered(np.asarray(labels))
    shared = {} if images is None else images  # scaled once per field, for every set
    planes = {}
    for name, plane in channels.items():
        if ("scaled", name) not in shared:
            shared[("scaled", name)] = cellprofiler_scale(plane)
        planes[name] = shared[("scaled", name)]
    scales = {name: cellprofiler_image_scale(plane) for name, plane in channels.items()}
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
    integers = {
        name: np.asarray(plane)
        for name, plane in channels.items()
        if np.asarray(plane).dtype.kind in "ui" and scales[name] <= 2**16
    }
    objects = FieldObjects(labels, planes, scales, integers, images)
    values: Measurements = {}
    with warnings.catch_warnings():  # empty or flat objects give NaN, as in CellProfiler
        warnings.simplefilter("ignore", RuntimeWarning)
        for measured in _measured(objects, groups, threads):
            values.update(measured)
    return _table(columns, {f"{object_name}_{key}": v for key, v in values.items()}, metadata)


def _measured(objects: FieldObjects, groups: tuple[str, ...], threads: int) -> list[Measurements]:
    """Each group's columns, in the groups' order; with ``threads`` above 1, the groups run
    at once in that many threads, the costliest started first. (The caller's filter of
    RuntimeWarnings covers the threads: up to Python 3.13 warning filters are global.)"""
    if threads <= 1 or len(groups) < 2:
        return [FEATURE_GROUPS[group].measure(objects) for group in groups]
    channels = len(objects.channels)
    first = sorted(groups, key=lambda group: -FEATURE_GROUPS[group].cost_for(channels))
    with ThreadPoolExecutor(min(threads, len(groups)), "measure") as pool:
        running = {group: pool.submit(FEATURE_GROUPS[group].measure, objects) for group in first}
        return [running[group].result() for group in groups]


def _table(
    columns: tuple[str, ...], measured: dict[str, np.ndarray], metadata: Mapping[str, object]
) -> pd.DataFrame:
    """The table in ``columns`` order: metadata repeated on every row, ``ObjectNumber``,
    ``*_Number_Object_Number`` (integers), then the measurements as one float block (a
    frame of hundreds of columns built column by column costs more than measuring a small
    field's objects' locations)."""
    count = len(next(iter(measured.values())))
    integers = {"ObjectNumber": np.arange(1, count + 1, dtype=np.int64)}
    for name in [c for c in columns if c.endswith("_Number_Object_Number") and c in measured]:
        integers[name] = np.asarray(measured[name]).astype(np.int64)
    head = pd.DataFrame({**metadata, **integers}, index=pd.RangeIndex(count))
    names = [c for c in columns if c in measured and c not in integers]
    block = np.empty((len(names), count))
    for row, name in enumerate(names):
        block[row] = measured[name]
    body = pd.DataFrame(block.T, columns=names, index=head.index, copy=False)
    table = pd.concat([head, body], axis=1)
    in_order = [*metadata, *integers, *names] == list(columns)  # Python lists: no index scan
    return table if in_order else table[list(columns)]


def warm_up(
    channels: tuple[str, ...] = ("DNA",),
    features: str | list[str] | tuple[str, ...] = "full",
    object_name: str = "Nuclei",
) -> None:
    """Load what a process's first measurement would load (about a second of imports).

    A plate worker can call this once when it starts, so that no field's ``Seconds_Measure``
    carries the start-up: the compiled kernels are compiled (or read from numba's cache)
    for float channels (the columns' synthetic field, :func:`feature_columns`, measured by
    the first call) and for 8- and 16-bit ones, whose integer values some groups look up.
    """
    groups = feature_groups(features)
    labels = np.zeros((48, 48), np.int32)
    labels[4:20, 4:22], labels[26:44, 24:44] = 1, 2
    ramp = np.arange(labels.size).reshape(labels.shape) % 200
    blank = dict.fromkeys(METADATA, "")  # the columns' key a plate's fields use
    for kind in (np.uint8, np.uint16):
        planes = {
            name: np.roll(ramp, index, axis=1).astype(kind) for index, name in enumerate(channels)
        }
        measure_objects(labels, planes, object_name=object_name, features=groups, metadata=blank)


@functools.lru_cache(maxsize=32)
def feature_columns(
    object_name: str,
    channels: tuple[str, ...],
    groups: tuple[str, ...],
    metadata: tuple[str, ...] = METADATA,
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
    objects = FieldObjects(labels, planes)
    names: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for group in groups:
            names += [f"{object_name}_{key}" for key in FEATURE_GROUPS[group].measure(objects)]
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
