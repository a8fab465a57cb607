"""The tables and files a plate run writes, each written whole or not at all.

Layout of a run's output folder::

    DIR/run.json                                  versions, model hash, backend, parameters
    DIR/images.parquet                            one row per field (counts, status, timings)
    DIR/features/plate=P/well=B03/B03_0.parquet   one row per object of field B03_0 (zstd)
    DIR/status/B03_0.json                         the field's record: written last, so a field
                                                  with a record has all its outputs

Every file is written under a hidden temporary name in its final folder and renamed into
place (a rename within one folder is atomic on POSIX file systems, local or shared).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .atomic import atomic_path, write_atomic_json

FEATURES_DIR = "features"
STATUS_DIR = "status"
IMAGES_TABLE = "images.parquet"
RUN_MANIFEST = "run.json"
PARQUET_COMPRESSION = "zstd"

STRING_COLUMNS = ("Metadata_Plate", "Metadata_Well")
INTEGER_COLUMNS = ("Metadata_Site", "ImageNumber", "ObjectNumber", "Metadata_ObjectNumber")


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_atomic_json(path, data)


def with_object_metadata(table: pd.DataFrame) -> pd.DataFrame:
    """``Metadata_ObjectNumber`` beside ``ObjectNumber``, and ``ImageNumber`` first after the
    other metadata: what pycytominer's ``aggregate(compute_object_count=True)`` and
    CellProfiler's exports name them."""
    table = table.copy()
    table["Metadata_ObjectNumber"] = table["ObjectNumber"].astype(np.int64)
    leading = [c for c in table.columns if c.startswith("Metadata_") or c == "ImageNumber"]
    leading = [c for c in leading if c != "Metadata_ObjectNumber"]
    order = [*leading, "ObjectNumber", "Metadata_ObjectNumber"]
    return table[order + [c for c in table.columns if c not in order]]


def arrow_table(table: pd.DataFrame):
    """A pyarrow table with the types every part shares, empty or not.

    Metadata names are strings, ``Metadata_Site``, ``ObjectNumber`` and
    ``*_Number_Object_Number`` are 64-bit integers, every measurement is float64, so
    the parts of a plate read back as one dataset.
    """
    import pyarrow as pa

    fields = []
    for column in table.columns:
        if (
            column in STRING_COLUMNS
            or column in ("status", "error", "backend")
            or (
                not pd.api.types.is_numeric_dtype(table[column])
                and not pd.api.types.is_bool_dtype(table[column])
            )
        ):
            kind = pa.string()
        elif column in INTEGER_COLUMNS or column.endswith("_Number_Object_Number"):
            kind = pa.int64()
        elif pd.api.types.is_integer_dtype(table[column]):
            kind = pa.int64()
        else:
            kind = pa.float64()
        fields.append(pa.field(column, kind))
    return pa.Table.from_pandas(table, schema=pa.schema(fields), preserve_index=False)


def write_parquet(path: Path, table: pd.DataFrame) -> Path:
    """Write a table as zstd parquet, atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(arrow_table(table), tmp, compression=PARQUET_COMPRESSION)
    return path


def features_path(out: Path, plate: str, well: str, field_name: str) -> Path:
    """``DIR/features/plate=P/well=W/<well>_<site>.parquet``."""
    return (
        Path(out)
        / FEATURES_DIR
        / f"plate={path_part(plate)}"
        / f"well={path_part(well)}"
        / f"{path_part(field_name)}.parquet"
    )


def path_part(name: str) -> str:
    """A name from a plate's metadata made safe as one folder name of a hive layout.

    Separators, ``=``, ``%`` and leading dots are percent-escaped (as hive partitioning
    escapes them), so ``2024/05/12 P1`` stays one folder and ``../x`` never leaves ``out``;
    the name itself is kept as is in the ``Metadata_*`` columns.

    Examples
    --------
    >>> path_part("2024/05/12 P1"), path_part("../x")
    ('2024%2F05%2F12 P1', '%2E.%2Fx')
    """
    escaped = "".join(f"%{ord(c):02X}" if c in "%/\\=:" else c for c in str(name))
    return f"%2E{escaped[1:]}" if escaped.startswith(".") else escaped


def status_path(out: Path, field_name: str) -> Path:
    """``DIR/status/<well>_<site>.json``: the field's record, its last output."""
    return Path(out) / STATUS_DIR / f"{field_name}.json"


def read_status(out: Path, field_name: str) -> dict[str, Any] | None:
    """A field's record, or None when it has none (or an unreadable one)."""
    path = status_path(out, field_name)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_all_status(out: Path) -> list[dict[str, Any]]:
    """Every field record in a run folder."""
    records = []
    for path in sorted((Path(out) / STATUS_DIR).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:  # cannot happen with atomic writes; never fatal
            continue
    return records


def images_table(records: Iterable[dict[str, Any]], object_name: str) -> pd.DataFrame:
    """One row per field from the field records, sorted by well and site.

    ``Count_<object>`` for the primary objects always, and for every other object set the
    records count (``Count_Cells``, ``Count_Micronuclei``...).
    """
    rows = [dict(record) for record in records]
    table = pd.DataFrame(rows)
    counts = [f"Count_{object_name}"]
    counts += sorted(c for c in table.columns if c.startswith("Count_") and c not in counts)
    columns = [
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "ImageNumber",
        "Metadata_FieldPath",
        *counts,
        "status",
        "error",
        "note",
        "Height",
        "Width",
        "backend",
    ]
    for column in columns:
        if column not in table:
            text = column in ("status", "error", "note", "backend")
            table[column] = pd.Series(dtype=object if text else float)
    seconds = sorted(c for c in table.columns if c.startswith("Seconds_"))
    table = table[[*columns, *seconds]]
    if len(table):
        table = table.sort_values(["Metadata_Well", "Metadata_Site"], kind="stable")
    for column in ("error", "note", "backend"):
        table[column] = table[column].fillna("").astype(str)
    for column in (*counts, "ImageNumber", "Height", "Width", "Metadata_Site"):
        table[column] = table[column].fillna(0).astype(np.int64)
    return table.reset_index(drop=True)


def read_features(out: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """All per-object tables of a run as one DataFrame (without the folder-name columns).

    Examples
    --------
    >>> cells = read_features("results/")  # doctest: +SKIP
    >>> cells.groupby("Metadata_Well")["Nuclei_AreaShape_Area"].mean()  # doctest: +SKIP
    """
    import pyarrow.dataset as ds

    folder = Path(out) / FEATURES_DIR
    if not folder.is_dir():
        raise InputError(f"{out}: no features folder (is this the --out of a plate run?).")
    dataset = ds.dataset(folder, format="parquet", partitioning=None)
    table = dataset.to_table(columns=columns).to_pandas()
    if len(table) and "Metadata_Well" in table and "Metadata_Site" in table:
        keys = [
            c
            for c in ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "ObjectNumber")
            if c in table
        ]
        table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return table
