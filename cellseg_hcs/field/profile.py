"""One row per cell: the measurements of every compartment of a cell, side by side.

A screen's single-cell profile is one row per cell with ``Cells_``, ``Cytoplasm_`` and
``Nuclei_`` columns (pycytominer's default compartments) and CellProfiler's relationship
columns (``Cells_Parent_Nuclei``, ``Nuclei_Children_Cells_Count``...). Cell k, cytoplasm k
and nucleus k are one cell (:func:`cellseg_hcs.field.cells.cell_objects` numbers them so),
so their rows are joined by number. A nuclei-only field gives today's table: one row per
nucleus. Object sets that are not compartments of a cell (``Micronuclei``) have tables of
their own (:func:`object_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .measure import measure_objects
from .measure.objects import present_numbers

COMPARTMENTS = ("Cells", "Cytoplasm")  # measured beside the primary objects, in this order


def cell_profiles(
    result: Any,
    planes: Mapping[str, np.ndarray],
    features: str | Sequence[str],
    metadata: Mapping[str, object] | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """One row per cell (per primary object), every compartment's columns, relationships.

    ``result`` is a :class:`~cellseg_hcs.field.pipeline.FieldResult`; ``threads``: each set's
    groups measured in that many threads at once (``measure_objects``).
    """
    count = result.count
    sets = [name for name in COMPARTMENTS if name in result.objects] + [result.primary]
    images: dict = {}  # the image-only work (granularity, Costes), once for all sets
    tables = [
        object_table(result.objects[name], planes, name, features, metadata, count, images, threads)
        for name in sets
    ]
    leading = [c for c in tables[0].columns if not c.startswith(tuple(f"{s}_" for s in sets))]
    joined = pd.concat([tables[0]] + [table.drop(columns=leading) for table in tables[1:]], axis=1)
    relations = relationship_columns(result.parents, sets, count)
    for column, values in relations.items():
        joined[column] = values
    for column, values in class_columns(result, result.primary, count).items():
        joined[column] = values
    return joined


def class_columns(result: Any, name: str, count: int) -> dict[str, Any]:
    """The class of each object of set ``name`` (``Metadata_<name>_Class``, a name: metadata
    to pycytominer, which takes every ``<name>_`` column for a numeric feature) and its
    probability of each class (``<name>_ClassProbability_<class>``), from a model with
    classes; none without one."""
    names, probabilities = getattr(result, "classes", {}).get(name, ([], None))
    if probabilities is None or len(names) != count:
        return {}
    classes = result.class_names
    columns: dict[str, Any] = {f"Metadata_{name}_Class": np.asarray(names, dtype=object)}
    for index, label in enumerate(classes[: probabilities.shape[1]]):
        columns[f"{name}_ClassProbability_{label}"] = probabilities[:, index]
    return columns


def object_table(
    labels: np.ndarray,
    planes: Mapping[str, np.ndarray],
    name: str,
    features: str | Sequence[str],
    metadata: Mapping[str, object] | None,
    count: int | None = None,
    images: dict | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """One object set measured: one row per object number 1..``count``.

    An object number without pixels (a cytoplasm its nucleus fills, when nuclei are not
    shrunk) keeps its row, with NaN measurements, so rows stay in step with the cells.
    ``images``: the field's dict for image-only work (see ``measure_objects``).
    """
    table = measure_objects(
        labels,
        planes,
        object_name=name,
        features=features,
        metadata=metadata,
        images=images,
        threads=threads,
    )
    present = present_numbers(labels)
    count = int(present.max()) if count is None and present.size else int(count or 0)
    if present.size == count:
        return table
    full = table.set_axis(present - 1).reindex(range(count)).reset_index(drop=True)
    for key, value in (metadata or {}).items():
        full[key] = value
    numbers = np.arange(1, count + 1, dtype=np.int64)
    full["ObjectNumber"] = numbers
    full[f"{name}_Number_Object_Number"] = numbers
    return full.astype({c: table[c].dtype for c in table.columns if not c.startswith(name)})


def relationship_columns(
    parents: Mapping[tuple[str, str], np.ndarray], sets: Sequence[str], count: int
) -> dict[str, np.ndarray]:
    """CellProfiler's relationship columns for the sets in a row: ``<child>_Parent_<parent>``
    for every child set in the row, ``<parent>_Children_<child>_Count`` for every parent
    set in the row (also of child sets with tables of their own, such as micronuclei)."""
    columns: dict[str, np.ndarray] = {}
    for (child, parent), numbers in parents.items():
        numbers = np.asarray(numbers, dtype=np.int64)
        if child in sets:
            columns[f"{child}_Parent_{parent}"] = numbers
        if parent in sets:
            counts = np.bincount(numbers[numbers > 0], minlength=count + 1)[1 : count + 1]
            columns[f"{parent}_Children_{child}_Count"] = counts.astype(np.int64)
    return columns


def own_tables(
    result: Any,
    planes: Mapping[str, np.ndarray],
    features: str | Sequence[str],
    metadata: Mapping[str, object] | None = None,
    threads: int = 1,
) -> dict[str, pd.DataFrame]:
    """A table for each object set that is not a compartment of a cell (``Micronuclei``,
    written to ``DIR/objects/<set>/``):
    its own measurements, one row per object, and its parent columns
    (``Micronuclei_Parent_Nuclei``), by set name.

    ``result`` is a :class:`~cellseg_hcs.field.pipeline.FieldResult`; the counts of children
    on the primary objects' rows (``Nuclei_Children_Micronuclei_Count``) come from
    :func:`cell_profiles`.
    """
    tables = {}
    for name, labels in result.objects.items():
        if name == result.primary or name in COMPARTMENTS:
            continue
        count = int(np.asarray(labels).max())
        table = object_table(labels, planes, name, features, metadata, count, threads=threads)
        parents = {key: numbers for key, numbers in result.parents.items() if key[0] == name}
        for column, values in relationship_columns(parents, [name], count).items():
            table[column] = values
        for column, values in class_columns(result, name, count).items():
            table[column] = values
        tables[name] = table
    return tables
