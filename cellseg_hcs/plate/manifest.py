"""A run's manifest, ``run.json``: versions, model, backend, layout and every parameter.

Written when a run starts (``status: running``) and again when it ends (``complete``, with
counts), so a run can be reproduced, resumed and checked against a rerun's settings.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..io import tables
from .layout import planned_layout

DEPENDENCIES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-image",
    "zarr",
    "ome-zarr",
    "dask",
    "distributed",
    "cp-measure",
    "pyarrow",
    "pandas",
    "onnxruntime",
)


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of the run in ``out``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(out) / tables.RUN_MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def write_manifest(plan, finished: dict[str, Any] | None) -> None:
    """Write ``run.json`` for a :class:`~cellseg_hcs.plate.plan.PlatePlan` (``finished``: the
    run's counts when it has ended, None while it runs)."""
    from ..runtime import backend_report

    backend_info: dict[str, Any] = {
        "asked": plan.parameters["backend"],
        "name": plan.backend,
        "reason": plan.backend_reason,
        "note": "each worker resolves 'auto' on its own hardware; the backend every field "
        "used is in images.parquet",
    }
    with contextlib.suppress(Exception):
        backend_info["available"] = {k: asdict(v) for k, v in backend_report().items()}
    manifest = {
        "cellseg_hcs": __version__,
        "status": "complete" if finished else "running",
        "started": plan.started,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": _python_version(),
        "dependencies": _dependency_versions(),
        "plate": {
            "path": str(plan.plate.path.absolute()),
            "name": plan.plate.name,
            "ngff_version": plan.plate.ngff_version,
            "fields": len(plan.plate.fields),
            "channels": list(plan.plate.channel_names),
        },
        "model": {
            "path": plan.model_path,
            "hash": plan.model.hash,
            "architecture": plan.model.info.architecture,
            "network": plan.model.info.network,
            "postprocess": plan.model.info.postprocess,
            "normalize": plan.model.info.normalize,
        },
        "backend": backend_info,
        "layout": planned_layout(plan.parameters),
        "parameters": plan.parameters,
        "outputs": {
            "labels": f"<plate>/<row>/<column>/<field>/labels/{plan.object_name}",
            "other_labels": [
                f"<plate>/<row>/<column>/<field>/labels/{name}" for name in other_sets(plan)
            ],
            "features": f"{tables.FEATURES_DIR}/plate=<plate>/well=<well>/<well>_<site>.parquet",
            "object_tables": [
                f"{tables.OBJECTS_DIR}/{name}/plate=<plate>/well=<well>/<well>_<site>.parquet"
                for name in other_sets(plan)
                if name not in COMPARTMENTS
            ],
            "images": tables.IMAGES_TABLE,
            "records": f"{tables.STATUS_DIR}/",
        },
        "result": finished,
    }
    tables.write_json(plan.out / tables.RUN_MANIFEST, manifest)


#: The object sets grown from the model's objects, measured in their rows of ``features/``.
COMPARTMENTS = ("Cells", "Cytoplasm")


def other_sets(plan) -> list[str]:
    """The object sets a run makes besides the model's own: the model's other sets
    (``Micronuclei``, with a table of their own), then ``Cells`` and ``Cytoplasm`` when
    cells are grown."""
    from ..field.classes import object_sets

    info = plan.model.info
    sets = [name for name in object_sets(info) if name != info.object_name]
    if plan.settings.cells is not None:
        sets += list(COMPARTMENTS)
    return sets


def _python_version() -> str:
    import platform

    return platform.python_version()


def _dependency_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in DEPENDENCIES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found
