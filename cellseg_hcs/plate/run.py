"""The plate run: every field of an OME-Zarr HCS plate through dask into labels and tables.

:func:`run_plate` is the one function behind ``cellseg-hcs run``. It checks everything it
can before writing anything, then maps two tasks over each field (see
:mod:`cellseg_hcs.plate.tasks`), keeping a bounded number of fields in flight so memory does
not grow with the plate, and finally writes ``images.parquet`` and ``run.json``. Outputs are
described in :mod:`cellseg_hcs.io.tables`.

A run can be stopped at any point (even by SIGKILL) and started again with the same
command: fields with a record are skipped, the others are (re)computed, and since every
field writes its own files under fixed names, no object is ever written twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import SettingError
from ..field.measure import feature_groups
from ..io import tables
from ..io.plate import Plate, open_plate
from .cluster import connect, run_fields
from .tasks import STATUS_FAILED, FieldJob, is_finished, remember_model

log = logging.getLogger(__name__)

# Parameters whose change makes earlier outputs in the same folder wrong.
OUTPUT_PARAMETERS = ("plate", "model_hash", "channels", "object_name", "features", "scale")
# How a user names each of them (the option that changes it).
PARAMETER_WORDS = {
    "plate": "plate",
    "model_hash": "model (--model)",
    "channels": "--channel",
    "object_name": "--object name",
    "features": "--features",
    "scale": "network scale (--diameter)",
}
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


@dataclass
class PlateRunResult:
    """What a plate run did: where its outputs are, and one row per field."""

    out: Path
    plate: Path
    images: pd.DataFrame
    computed: int
    skipped: int
    seconds: float
    scale: float = 1.0
    """The network ran on every field resampled by this factor (``diameter``)."""
    measured_diameter: float | None = None
    """The objects' median diameter that ``diameter="auto"`` measured, in pixels."""

    @property
    def failed(self) -> int:
        return int((self.images["status"] == STATUS_FAILED).sum())

    @property
    def objects(self) -> int:
        return int(self.images.filter(like="Count_").sum().sum())


def run_plate(
    plate: str | Path,
    out: str | Path,
    *,
    model: Any = "nuclei",
    channel: str | list[str] | None = None,
    object_name: str = "Nuclei",
    features: str | list[str] = "default",
    wells: list[str] | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    backend: str = "auto",
    device: str | None = None,
    diameter: float | str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PlateRunResult:
    """Segment and measure every field of an OME-Zarr HCS plate.

    Writes ``labels/<object_name>`` into each field of the plate, and into ``out``: one
    features parquet per field, ``images.parquet`` (one row per field) and ``run.json``.
    Everything is checked before anything is written; a field that fails is recorded in
    ``images.parquet`` and the rest of the plate goes on.

    Parameters
    ----------
    plate:
        The OME-Zarr HCS plate (NGFF 0.4 or 0.5).
    out:
        The output folder. Running again with the same folder skips finished fields.
    model:
        A built-in model name, a ``.safetensors`` model file, or a loaded
        :class:`~cellseg_hcs.model.model.Model`.
    channel:
        The channel name(s) the model reads; by default the plate's first channel(s).
    object_name:
        What the objects are called in labels and columns (``Nuclei_AreaShape_Area``).
    features:
        ``minimal``, ``default`` or ``full`` (see :data:`cellseg_hcs.field.measure.FEATURE_SETS`),
        or a list of feature groups.
    wells:
        Only these wells (``["B03", "B04"]``); all wells by default.
    workers:
        Worker processes of the local dask cluster (default: sized to the machine).
    scheduler:
        Address of a running dask scheduler (``tcp://host:8786``), or a
        ``distributed.Client``, to run on instead of a local cluster.
    backend, device:
        Inference backend (``auto``, ``torch``, ...) and device (``cpu``, ``cuda:0``).
    diameter:
        Typical object diameter in pixels, when far from the model's working diameter;
        the network then runs on each field resampled to it (see ``Model.segment``).
        ``"auto"`` measures it on the plate's first field with objects and runs every field
        at the one scale that follows (a plate is one magnification); None (the default)
        runs at the fields' own scale.
    overwrite:
        Recompute fields that are already finished.
    progress:
        Show a progress bar.

    Examples
    --------
    >>> result = run_plate("plate.zarr", "results/", channel="DNA")  # doctest: +SKIP
    >>> result.images[["Metadata_Well", "Count_Nuclei", "status"]]  # doctest: +SKIP
    """
    started = time.perf_counter()
    plan = _plan(
        plate,
        out,
        model=model,
        channel=channel,
        object_name=object_name,
        features=features,
        wells=wells,
        workers=workers,
        scheduler=scheduler,
        backend=backend,
        device=device,
        diameter=diameter,
        overwrite=overwrite,
    )
    with connect(scheduler, workers) as (client, inference_threads):
        _prepare_output(plan, overwrite)
        jobs = plan.jobs(threads=inference_threads)
        todo = jobs if overwrite else [j for j in jobs if not is_finished(j)]
        skipped = len(jobs) - len(todo)
        if skipped:
            log.info(
                "%d of %d field(s) already finished in %s; skipping them",
                skipped,
                len(jobs),
                plan.out,
            )
        run_fields(
            client, todo, total=len(jobs), done=skipped, progress=progress, object_name=object_name
        )
    records = tables.read_all_status(plan.out)
    images = tables.images_table(records, object_name)
    tables.write_parquet(plan.out / tables.IMAGES_TABLE, images)
    seconds = time.perf_counter() - started
    result = PlateRunResult(
        plan.out,
        plan.plate.path,
        images,
        len(todo),
        skipped,
        seconds,
        plan.parameters["scale"],
        plan.parameters.get("measured_diameter"),
    )
    _write_manifest(
        plan,
        finished={
            "fields": len(images),
            "failed": result.failed,
            "objects": result.objects,
            "computed": len(todo),
            "skipped": skipped,
            "seconds": round(seconds, 2),
        },
    )
    return result


# ----------------------------------------------------------------------------- checking


@dataclass
class _Plan:
    plate: Plate
    out: Path
    fields: list
    channels: tuple[str, ...]
    object_name: str
    features: tuple[str, ...]
    model: Any
    model_path: str
    backend: str
    backend_reason: str
    device: str | None
    parameters: dict[str, Any]

    def jobs(self, threads: int | None) -> list[FieldJob]:
        # The hash (all weights, ~7 ms) was taken once in _plan; never once per field.
        return [
            FieldJob(
                plate_path=str(self.plate.path),
                field=f,
                out=str(self.out),
                channels=self.channels,
                object_name=self.object_name,
                features=self.features,
                model_path=self.model_path,
                model_hash=self.parameters["model_hash"],
                backend=self.parameters["backend"],
                device=self.device,
                threads=threads,
                postprocess=dict(self.model.info.postprocess),
                scale=self.parameters["scale"],
            )
            for f in self.fields
        ]


OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _plan(
    plate,
    out,
    *,
    model,
    channel,
    object_name,
    features,
    wells,
    workers,
    scheduler,
    backend,
    device,
    diameter=None,
    overwrite,
) -> _Plan:
    """Check every input and setting; raise one sentence for the first problem found."""
    from ..field.scale import parse_diameter
    from ..model.model import Model, load_model
    from ..runtime import choose_backend

    opened = open_plate(plate)
    fields = opened.select(list(wells) if wells else None)
    if not OBJECT_NAME.fullmatch(object_name or ""):
        raise SettingError(
            f"object name {object_name!r} must be letters and digits, starting "
            "with a letter (it begins every column name, e.g. Nuclei_...)."
        )
    groups = feature_groups(features)
    if workers is not None and scheduler is not None:
        raise SettingError(
            "give either --workers (a local cluster) or --scheduler (an existing one), not both."
        )
    if workers is not None and workers < 1:
        raise SettingError(f"--workers must be 1 or more, not {workers}.")
    diameter = parse_diameter(diameter)
    loaded = model if isinstance(model, Model) else load_model(model)
    channels = _channels(opened, channel, loaded.info.in_channels)
    # With the model, "auto" on a CPU is measured once and cached on disk; workers on this
    # machine then read the same answer, so every field of a local run uses one backend.
    backend_name, reason = choose_backend(backend, device, loaded)
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file, not a folder.")
    previous = _read_manifest(out)
    previous_parameters = (previous or {}).get("parameters")
    if not os.access(opened.path, os.W_OK):
        raise SettingError(
            f"plate {opened.path} is read-only; the run writes each field's "
            "labels into the plate, so it must be writable."
        )
    model_path = _model_path(model, loaded, out)
    parameters = {
        "plate": str(opened.path.absolute()),
        "out": str(out),
        "model": str(model_path),
        "model_hash": loaded.hash,
        "channels": list(channels),
        "object_name": object_name,
        "features": list(groups),
        "feature_set": features if isinstance(features, str) else "custom",
        "wells": sorted({f.well for f in fields}),
        "workers": workers,
        "scheduler": _scheduler_text(scheduler),
        "backend": backend,
        "device": device,
        "diameter": diameter,
        **_network_scale(
            opened,
            channels,
            loaded,
            diameter,
            backend_name,
            device,
            None if overwrite else previous_parameters,
        ),
        "overwrite": overwrite,
    }
    if previous and not overwrite:
        old = previous.get("parameters", {})
        changed = [k for k in OUTPUT_PARAMETERS if k in old and old[k] != parameters[k]]
        if changed:
            raise SettingError(
                f"{out} holds a run with a different {PARAMETER_WORDS[changed[0]]} "
                f"({old[changed[0]]!r}); use another --out, or --overwrite to replace it."
            )
    if not overwrite:
        _refuse_other_labels(
            opened,
            fields,
            object_name,
            {"model_hash": loaded.hash, "scale": round(float(parameters["scale"]), 6)},
        )
    return _Plan(
        opened,
        out,
        fields,
        channels,
        object_name,
        groups,
        loaded,
        model_path,
        backend_name,
        reason,
        device,
        parameters,
    )


def _network_scale(
    plate: Plate,
    channels: tuple[str, ...],
    model,
    diameter,
    backend: str,
    device: str | None,
    previous: dict | None = None,
) -> dict[str, Any]:
    """``{"scale": ...}`` for the whole plate, and for ``"auto"`` the diameter it measured.

    ``"auto"`` segments the plate's first fields at their own scale (the same fields
    whichever wells are run; at most :data:`AUTO_FIELDS`, stopping once they hold
    :data:`~cellseg_hcs.field.scale.AUTO_MIN_OBJECTS` objects) and takes the scale that
    brings the objects' pooled median diameter to the model's (1.0 when it is near it
    already, or when too few objects were found). A rerun into the same output folder takes
    the scale its first run measured, so resuming never depends on measuring again.
    """
    from ..field.scale import AUTO, AUTO_MIN_OBJECTS, auto_scale
    from ..io.plate import read_field
    from .tasks import model_input, model_planes

    if diameter != AUTO:
        return {"scale": model.scale_for(diameter)}
    if (
        previous
        and previous.get("diameter") == AUTO
        and "measured_diameter" in previous
        and all(
            previous.get(key) == value
            for key, value in (
                ("plate", str(plate.path.absolute())),
                ("model_hash", model.hash),
                ("channels", list(channels)),
            )
        )
    ):
        return {"scale": previous["scale"], "measured_diameter": previous["measured_diameter"]}
    runtime = model.runtime(backend, device)
    measured: list[np.ndarray] = []
    for field in plate.select(None)[:AUTO_FIELDS]:
        try:
            image = read_field(plate.path, field, list(channels))
        except Exception:  # noqa: BLE001 - a broken field fails in the run, with its reason
            continue
        stacked, problem = model_planes(image, channels, field.name)
        if problem or not np.any(stacked):
            continue
        field_input = model_input(model, stacked)
        measured.append(model.labels_from_maps(runtime.predict(field_input), field_input))
        if sum(int(labels.max()) for labels in measured) >= AUTO_MIN_OBJECTS:
            break
    scale, diameter_px = auto_scale(measured, model.info.working_diameter)
    log.info(
        "diameter auto: %.1f px measured on %d field(s); network scale %.3f",
        diameter_px,
        len(measured),
        scale,
    )
    return {"scale": scale, "measured_diameter": round(diameter_px, 2)}


AUTO_FIELDS = 4


def _refuse_other_labels(plate: Plate, fields, object_name: str, ours: dict) -> None:
    """One sentence when a field already holds ``labels/<object_name>`` made otherwise
    (another model or scale, e.g. a run into another --out, or another tool): this run
    would replace them, and the tables of the run that made them would describe lost labels."""
    from ..io.plate import labels_provenance

    for field in fields:
        if not (Path(plate.path) / field.path / "labels" / object_name).is_dir():
            continue
        theirs = labels_provenance(plate.path, field, object_name)
        if theirs != ours:
            made = (
                f"by model {theirs.get('model_hash')} at scale {theirs.get('scale')}"
                if theirs
                else "by another tool"
            )
            raise SettingError(
                f"field {field.name} of {plate.path} already holds labels/{object_name} made "
                f"{made}; give another --object name to keep both, or --overwrite to "
                "replace them."
            )


def _channels(plate: Plate, channel, count: int) -> tuple[str, ...]:
    names = list(plate.channel_names)
    if channel is None:
        wanted = names[:count]
    else:
        wanted = [channel] if isinstance(channel, str) else list(channel)
        wanted = [c.strip() for text in wanted for c in text.split(",") if c.strip()]
        # A channel may be given by its index, as `segment --channel 0` takes it.
        wanted = [
            names[int(c)] if c.isdigit() and c not in names and int(c) < len(names) else c
            for c in wanted
        ]
    for name in wanted:
        if name not in names:
            raise SettingError(
                f"channel {name!r} is not in plate {plate.path}; its channels "
                f"are {', '.join(names)}."
            )
    if len(wanted) != count:
        raise SettingError(
            f"the model reads {count} channel(s), but {len(wanted)} "
            f"({', '.join(wanted)}) were given for plate {plate.path}."
        )
    return tuple(wanted)


def _model_path(model, loaded, out: Path) -> str:
    """Where workers find the model: a built-in model's name (each worker opens its own
    installation's copy), a model file, or a copy in ``out`` for in-memory models."""
    from ..weights import is_builtin_name

    if is_builtin_name(model):
        path = model
    elif loaded.source and Path(loaded.source).is_file():
        path = str(Path(loaded.source).absolute())
    else:
        path = str(out / f"model-{loaded.hash}.safetensors")
    remember_model(path, loaded)
    return path


def _scheduler_text(scheduler) -> str | None:
    if scheduler is None or isinstance(scheduler, str):
        return scheduler
    return str(getattr(scheduler, "scheduler_info", lambda: {})().get("address", scheduler))


def _read_manifest(out: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((out / tables.RUN_MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ----------------------------------------------------------------------------- writing


def _prepare_output(plan: _Plan, overwrite: bool) -> None:
    out = plan.out
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        previous = _read_manifest(out) or {}
        old = previous.get("parameters", {})
        if any(k in old and old[k] != plan.parameters[k] for k in OUTPUT_PARAMETERS):
            # Outputs made with other settings must not mix with these ones.
            for name in (tables.FEATURES_DIR, tables.STATUS_DIR):
                shutil.rmtree(out / name, ignore_errors=True)
            (out / tables.IMAGES_TABLE).unlink(missing_ok=True)
    if Path(plan.model_path).is_absolute() and not Path(plan.model_path).is_file():
        plan.model.save(plan.model_path)
    _write_manifest(plan, finished=None)


def _write_manifest(plan: _Plan, finished: dict[str, Any] | None) -> None:
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
        "parameters": plan.parameters,
        "outputs": {
            "labels": f"<plate>/<row>/<column>/<field>/labels/{plan.object_name}",
            "features": f"{tables.FEATURES_DIR}/plate=<plate>/well=<well>/<well>_<site>.parquet",
            "images": tables.IMAGES_TABLE,
            "records": f"{tables.STATUS_DIR}/",
        },
        "result": finished,
    }
    tables.write_json(plan.out / tables.RUN_MANIFEST, manifest)


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
