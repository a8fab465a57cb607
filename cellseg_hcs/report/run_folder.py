"""What a plate run left in its output folder, read for the QC report.

:func:`read_run` gathers the manifest (``run.json``), the one-row-per-field table
(``images.parquet``, or the field records when a run was stopped before writing it), the
plate's layout (rows and columns from its NGFF ``plate`` metadata) and the names of the
per-object feature columns. It is tolerant of what later runs add: every ``Count_*`` column
is an object set, every ``<Object>_AreaShape_Area`` column names one, every ``Seconds_*``
column is a stage.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import tables
from ..io.plate import Plate, open_plate, split_well, well_name

FINISHED = ("ok", "empty")
OUTLIER_Z = 3.0
"""A well whose value is this many robust standard deviations from the plate's is an outlier."""
OUTLIER_MIN_WELLS = 8
"""Fewer wells than this give no robust spread to call outliers with."""


@dataclass(frozen=True)
class PlateLayout:
    """The plate's grid: row names top to bottom, column names left to right."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def wells(self) -> list[str]:
        """Every well of the grid, row by row (``A01``, ``A02``...)."""
        return [well_name(row, column) for row in self.rows for column in self.columns]


@dataclass
class RunFolder:
    """A plate run's outputs, read once.

    ``plate`` is None when the plate named in ``run.json`` cannot be opened (it moved);
    ``plate_note`` then says why, and the layout comes from the well names of the run.
    """

    path: Path
    manifest: dict[str, Any]
    images: pd.DataFrame
    layout: PlateLayout
    plate: Plate | None
    plate_note: str | None
    feature_columns: tuple[str, ...]

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.manifest.get("parameters") or {})

    @property
    def plate_path(self) -> Path:
        plate = self.manifest.get("plate") or {}
        return Path(plate.get("path") or self.parameters.get("plate") or "")

    @property
    def plate_name(self) -> str:
        names = self.images["Metadata_Plate"].dropna().unique()
        return str(
            (self.manifest.get("plate") or {}).get("name") or (names[0] if len(names) else "")
        )

    @property
    def count_columns(self) -> list[str]:
        """``Count_Nuclei`` first (the run's objects), then every other object set's."""
        return [c for c in self.images.columns if c.startswith("Count_")]

    @property
    def stage_columns(self) -> list[str]:
        """``Seconds_*`` columns of the stages (not their total), in the order a field runs."""
        order = ("Read", "Normalize", "Predict", "Postprocess", "WriteLabels", "Measure")
        stages = [
            c for c in self.images.columns if c.startswith("Seconds_") and c != "Seconds_Total"
        ]

        def rank(column: str) -> tuple[int, str]:
            name = column.removeprefix("Seconds_")
            return (order.index(name) if name in order else len(order), name)

        return sorted(stages, key=rank)

    @property
    def channels(self) -> list[str]:
        return [str(c) for c in (self.manifest.get("plate") or {}).get("channels") or []]

    @property
    def object_sets(self) -> list[str]:
        """Object sets with measurements (``Nuclei``, ``Cells``...), as the columns name them."""
        found = []
        for column in self.feature_columns:
            match = re.fullmatch(r"([A-Za-z0-9]+)_AreaShape_Area", column)
            if match and match.group(1) not in found:
                found.append(match.group(1))
        return found

    @property
    def micronucleus_column(self) -> str | None:
        """``<Nuclei>_Children_Micronuclei_Count`` when the run found micronuclei (a model
        with a micronucleus class): the micronucleus assay's readout is read from it."""
        if not self.object_sets:
            return None
        column = f"{self.object_sets[0]}_Children_Micronuclei_Count"
        return column if column in self.feature_columns else None

    @functools.cached_property
    def micronucleated(self) -> tuple[pd.Series, float] | None:
        """The micronucleus assay's readout: the share (%) of the run's objects (nuclei)
        with at least one micronucleus, per well and over the plate (None without
        micronuclei)."""
        column = self.micronucleus_column
        if column is None:
            return None
        values = self.feature_values([column])
        if not len(values):
            return None
        with_one = values[column] > 0
        return with_one.groupby(values["Metadata_Well"]).mean() * 100, with_one.mean() * 100

    def key_features(self) -> list[str]:
        """Area and the mean intensity in each channel, for every object set measured."""
        wanted = []
        for objects in self.object_sets:
            wanted.append(f"{objects}_AreaShape_Area")
            wanted += [f"{objects}_Intensity_MeanIntensity_{c}" for c in self.channels]
        return [c for c in wanted if c in self.feature_columns]

    def check_features(self, columns: list[str]) -> None:
        """One sentence naming the first column that the run's features do not have."""
        for column in columns:
            if column not in self.feature_columns:
                close = difflib.get_close_matches(column, self.feature_columns, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise InputError(
                    f"--feature {column} is not a feature column of the run in {self.path}{hint}."
                )

    def feature_values(self, columns: list[str]) -> pd.DataFrame:
        """One row per object: ``Metadata_Well``, ``Metadata_Site`` and ``columns``."""
        keys = ["Metadata_Well", "Metadata_Site"]
        if not columns or not self.feature_columns:
            return pd.DataFrame(columns=[*keys, *columns])
        table = _features_dataset(self.path).to_table(columns=[*keys, *columns]).to_pandas()
        for column in columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
        return table

    def wells(self, medians: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per well of the layout: fields, ok/empty/failed, counts, and the medians
        of ``medians`` (per-well feature medians, indexed by well) where given."""
        images = self.images
        grouped = images.groupby("Metadata_Well")
        table = pd.DataFrame(index=pd.Index(self.layout.wells, name="Metadata_Well"))
        table["fields"] = grouped.size()
        for status in ("ok", "empty", "failed"):
            table[status] = grouped["status"].agg(lambda s, status=status: int((s == status).sum()))
        table = table.fillna({"fields": 0, "ok": 0, "empty": 0, "failed": 0}).astype(
            {"fields": int, "ok": int, "empty": int, "failed": int}
        )
        finished = images[images["status"].isin(FINISHED)].groupby("Metadata_Well")
        for column in self.count_columns:
            table[column] = finished[column].sum()  # NaN: the well has no finished field
        if medians is not None:
            table = table.join(medians)
        return table


def read_run(path: str | Path) -> RunFolder:
    """Read a plate run's output folder, or say in one sentence why it cannot be reported.

    Examples
    --------
    >>> run = read_run("results/")  # doctest: +SKIP
    >>> run.wells()[["fields", "failed", "Count_Nuclei"]]  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder (give the --out folder of a plate run).")
    manifest = _read_manifest(path)
    images = _read_images(path, manifest)
    finished = images["status"].isin(FINISHED)
    if not finished.any():
        failed = images[images["status"] == "failed"]
        first = f"; the first error: {failed['error'].iloc[0]}" if len(failed) else ""
        raise InputError(
            f"{path}: none of the run's {len(images)} field(s) has finished, so there is "
            f"nothing to report{first}"
        )
    plate, note = _open_plate(manifest)
    layout = _layout(plate, images)
    return RunFolder(path, manifest, images, layout, plate, note, _feature_columns(path))


def robust_z(values: pd.Series) -> pd.Series:
    """How many robust standard deviations (1.4826 MAD) each value is from the median; NaN
    for every value when there are too few values or no spread to measure with."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if len(values) < OUTLIER_MIN_WELLS:
        return pd.Series(np.nan, index=values.index)
    median = values.median()
    spread = 1.4826 * (values - median).abs().median()
    if not spread > 0:
        return pd.Series(np.nan, index=values.index)
    return (values - median) / spread


def outliers(values: pd.Series) -> pd.Series:
    """The robust z of the wells whose value is an outlier (``|z| > 3``), largest first."""
    z = robust_z(values)
    picked = z[z.abs() > OUTLIER_Z]
    return picked.reindex(picked.abs().sort_values(ascending=False).index)


# ----------------------------------------------------------------------------- reading


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / tables.RUN_MANIFEST
    if not manifest_path.is_file():
        raise InputError(
            f"{path}: not a plate run folder (no {tables.RUN_MANIFEST}; give the --out "
            "folder of `cellseg-hcs run`)."
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{manifest_path}: not readable as JSON.") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_path}: not a run manifest (not a JSON object).")
    return manifest


def _read_images(path: Path, manifest: dict[str, Any]) -> pd.DataFrame:
    table_path = path / tables.IMAGES_TABLE
    if table_path.is_file():
        try:
            images = pd.read_parquet(table_path)
        except Exception:  # noqa: BLE001 - any unreadable table is one sentence
            raise InputError(f"{table_path}: not a readable parquet table.") from None
    else:  # a run stopped before its end: its field records are what it has
        records = tables.read_all_status(path)
        if not records:
            raise InputError(
                f"{path}: not a plate run folder with results (no {tables.IMAGES_TABLE} and "
                f"no field records in {tables.STATUS_DIR}/)."
            )
        object_name = (manifest.get("parameters") or {}).get("object_name") or "Nuclei"
        images = tables.images_table(records, object_name)
    for column in ("Metadata_Well", "status"):
        if column not in images:
            raise InputError(f"{table_path}: not an images table (no {column} column).")
    images["error"] = images.get("error", pd.Series("", index=images.index)).fillna("")
    return images


def _open_plate(manifest: dict[str, Any]) -> tuple[Plate | None, str | None]:
    plate = manifest.get("plate") or {}
    path = plate.get("path") or (manifest.get("parameters") or {}).get("plate")
    if not path:
        return None, "run.json names no plate"
    try:
        return open_plate(path), None
    except Exception as exc:  # noqa: BLE001 - a moved plate still gets a report
        return None, str(exc)


def _layout(plate: Plate | None, images: pd.DataFrame) -> PlateLayout:
    """The plate metadata's grid; wells of the run outside it (or every well, when the plate
    cannot be read) add their row and column."""
    rows: list[str] = list(plate.rows) if plate else []
    columns: list[str] = list(plate.columns) if plate else []
    for well in images["Metadata_Well"].astype(str).unique():
        if well in PlateLayout(tuple(rows), tuple(columns)).wells:
            continue
        with contextlib.suppress(ValueError):
            row, column = split_well(well)
            rows += [row] if row not in rows else []
            columns += [column] if column not in columns else []
    if not (plate and plate.rows and plate.columns):
        rows.sort(key=lambda r: (len(r), r))
        columns.sort(key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    return PlateLayout(tuple(rows), tuple(columns))


def _features_dataset(path: Path):
    import pyarrow as pa
    import pyarrow.dataset as ds

    folder = path / tables.FEATURES_DIR
    dataset = ds.dataset(folder, format="parquet", partitioning=None)
    # Parts may differ (a later object set adds columns): read them under their union.
    schemas = [fragment.physical_schema for fragment in dataset.get_fragments()]
    if not schemas:
        return dataset
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    return ds.dataset(folder, format="parquet", partitioning=None, schema=schema)


def _feature_columns(path: Path) -> tuple[str, ...]:
    if not (path / tables.FEATURES_DIR).is_dir():
        return ()
    try:
        return tuple(_features_dataset(path).schema.names)
    except Exception:  # noqa: BLE001 - unreadable parts: the report goes on without features
        return ()
