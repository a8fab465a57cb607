"""Planning a plate run: every input and setting checked, before anything is written.

:func:`plan_run` opens the plate, picks its fields, loads the model once, resolves the
channels against the plate's names, chooses the backend, checks the output folder and an
earlier run in it, and for ``diameter="auto"`` measures the objects on the plate's first
fields. The first problem found is one sentence (a :class:`~cellseg_hcs.errors.CellSegError`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SettingError
from ..field.measure import feature_groups
from ..field.pipeline import FieldChannels, FieldPipeline, check_object_name
from ..field.scale import AUTO_MIN_OBJECTS, auto_scale
from ..io.atomic import check_can_write, output_folder
from ..io.plate import Plate, PlateField, labels_provenance, open_plate, read_field
from ..settings import AUTO, FieldSettings
from .manifest import read_manifest
from .tasks import FieldJob, remember_model

log = logging.getLogger("cellseg_hcs.plate")

# Parameters whose change makes earlier outputs in the same folder wrong.
OUTPUT_PARAMETERS = (
    "plate",
    "model_hash",
    "channels",
    "object_name",
    "cells",
    "measure_channels",
    "features",
    "scale",
    "flips",
)
# How a user names each of them (the option that changes it).
PARAMETER_WORDS = {
    "plate": "plate",
    "model_hash": "model (--model)",
    "channels": "--channel",
    "object_name": "--object name",
    "cells": "cell settings (--cells-channel, --cells-method...)",
    "measure_channels": "--measure-channels",
    "features": "--features",
    "scale": "network scale (--diameter)",
    "flips": "number of test-time flips (--flips)",
}
OBJECT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
AUTO_FIELDS = 4  # "auto" measures the objects on at most this many of the plate's first fields


@dataclass
class PlatePlan:
    """A checked run: the plate, its fields, the settings every field gets, and the model."""

    plate: Plate
    out: Path
    fields: list[PlateField]
    settings: FieldSettings
    object_name: str
    features: tuple[str, ...]
    model: Any
    model_path: str
    backend: str
    backend_reason: str
    parameters: dict[str, Any]
    started: str = dataclasses.field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(str(choice.value) for choice in self.settings.channel)

    def jobs(self, threads: int | None) -> list[FieldJob]:
        # The hash (all weights, ~7 ms) was taken once in plan_run; never once per field.
        number = {field.path: index + 1 for index, field in enumerate(self.plate.fields)}
        return [
            FieldJob(
                plate_path=str(self.plate.path),
                field=field,
                out=str(self.out),
                settings=self.settings,
                object_name=self.object_name,
                features=self.features,
                model_path=self.model_path,
                model_hash=self.parameters["model_hash"],
                channel_names=tuple(self.plate.channel_names),
                image_number=number[field.path],
                threads=threads,
                scale=self.parameters["scale"],
            )
            for field in self.fields
        ]


def plan_run(
    plate: str | Path,
    out: str | Path,
    *,
    model: Any,
    settings: FieldSettings,
    object_name: str,
    features: str | list[str],
    wells: list[str] | None,
    workers: int | None,
    scheduler: Any,
    overwrite: bool,
) -> PlatePlan:
    """Check every input and setting; raise one sentence for the first problem found."""
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
    loaded = model if isinstance(model, Model) else load_model(model)
    check_object_name(loaded.info, object_name, settings.cells is not None)
    channels = plate_channels(opened, settings, loaded.info.in_channels)
    settings = settings.replace(
        channel=list(channels), **named_channels(opened, settings, channels)
    )
    # With the model, "auto" on a CPU is measured once and cached on disk; workers on this
    # machine then read the same answer, so every field of a local run uses one backend.
    backend_name, reason = choose_backend(settings.backend, settings.device, loaded)
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise SettingError(f"--out {out} is a file, not a folder.")
    previous = read_manifest(out)
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
        "cells": settings.to_dict()["cells"],
        "measure_channels": [choice.value for choice in settings.measure_channels],
        "features": list(groups),
        "feature_set": features if isinstance(features, str) else "custom",
        "wells": sorted({f.well for f in fields}),
        "workers": workers,
        "scheduler": _scheduler_text(scheduler),
        "backend": settings.backend,
        "device": settings.device,
        "diameter": settings.diameter,
        "flips": loaded.flips_for(settings.flips),
        "settings": settings.to_dict(),
        "overwrite": overwrite,
    }
    if previous and not overwrite:
        old = previous.get("parameters", {})
        same_scale = old.get("diameter") == settings.diameter and all(
            old.get(key) == parameters[key] for key in ("plate", "model_hash", "channels")
        )
        if same_scale and "scale" in old:  # resuming never depends on measuring again
            parameters["scale"] = old["scale"]
            if "measured_diameter" in old:
                parameters["measured_diameter"] = old["measured_diameter"]
        changed = [
            k for k in OUTPUT_PARAMETERS if k in old and k in parameters and old[k] != parameters[k]
        ]
        if changed:
            raise SettingError(
                f"{out} holds a run with a different {PARAMETER_WORDS[changed[0]]} "
                f"({old[changed[0]]!r}); use another --out, or --overwrite to replace it."
            )
    check_can_write(out)  # before the model runs on the first fields or anything is written
    if "scale" not in parameters:
        # The nuclei's size alone decides: the cells are not grown for it.
        pipeline = loaded.pipeline(settings.replace(cells=None), object_name=object_name)
        parameters.update(network_scale(opened, pipeline))
    if previous and not overwrite:
        old = previous.get("parameters", {})
        if "scale" in old and old["scale"] != parameters["scale"]:
            raise SettingError(
                f"{out} holds a run with a different {PARAMETER_WORDS['scale']} "
                f"({old['scale']!r}); use another --out, or --overwrite to replace it."
            )
    if not overwrite:
        _refuse_other_labels(
            opened,
            fields,
            object_name,
            {"model_hash": loaded.hash, "scale": round(float(parameters["scale"]), 6)},
        )
    output_folder(out)
    return PlatePlan(
        opened,
        out,
        fields,
        settings,
        object_name,
        groups,
        loaded,
        model_path,
        backend_name,
        reason,
        parameters,
    )


def plate_channels(plate: Plate, settings: FieldSettings, count: int) -> tuple[str, ...]:
    """The names of the channels the model reads (``settings.channel``, else the first)."""
    names = list(plate.channel_names)
    where = f"plate {plate.path}"
    if not settings.channel:
        if len(names) < count:
            raise SettingError(f"the model reads {count} channel(s), but {where} has {len(names)}.")
        return tuple(names[:count])
    wanted = tuple(names[choice.resolve(names, where)] for choice in settings.channel)
    if len(wanted) != count:
        raise SettingError(
            f"the model reads {count} channel(s), but {len(wanted)} "
            f"({', '.join(wanted)}) were given for {where}."
        )
    return wanted


def named_channels(
    plate: Plate, settings: FieldSettings, nuclei: tuple[str, ...]
) -> dict[str, Any]:
    """The cell channel and the measured channels by the plate's names, checked now: a cell
    channel the plate lacks, or the nuclei's channel given as the cell channel, is one
    sentence before anything is written."""
    names = list(plate.channel_names)
    where = f"plate {plate.path}"
    changes: dict[str, Any] = {}
    if settings.measure_channels:
        changes["measure_channels"] = [
            names[choice.resolve(names, where)] for choice in settings.measure_channels
        ]
    cells = settings.cells
    if cells is not None:
        name = names[cells.channel.resolve(names, where)]
        if name in nuclei:
            raise SettingError(
                f"the cell channel {name!r} is the nuclei's channel of {where}; give the "
                "cytoplasm, membrane or actin stain the cells grow on."
            )
        cell_settings = settings.to_dict()["cells"]
        changes["cells"] = {**cell_settings, "channel": name}
        if cells.method == "model":
            from ..model.model import load_model

            load_model(cells.model)  # a cell model that cannot be read: one sentence, now
    return changes


def network_scale(plate: Plate, pipeline: FieldPipeline) -> dict[str, Any]:
    """``{"scale": ...}`` for the whole plate, and for ``"auto"`` the diameter it measured.

    ``"auto"`` segments the plate's first fields at their own scale (the same fields
    whichever wells are run; at most :data:`AUTO_FIELDS`, stopping once they hold
    :data:`~cellseg_hcs.field.scale.AUTO_MIN_OBJECTS` objects) and takes the scale that
    brings the objects' pooled median diameter to the model's (1.0 when it is near it
    already, or when too few objects were found): a plate is one magnification.
    """
    if pipeline.settings.diameter != AUTO:
        return {"scale": pipeline.first_scale()}
    names = [str(choice.value) for choice in pipeline.settings.channel]
    measured: list[np.ndarray] = []
    for field in plate.fields[:AUTO_FIELDS]:
        try:
            image = read_field(plate.path, field, names)
            result = pipeline.run(FieldChannels(image.channels, f"field {field.name}"), scale=1.0)
        except Exception as exc:  # noqa: BLE001 - a broken field fails in the run, with its reason
            log.info("diameter auto: field %s not measured (%s)", field.name, exc)
            continue
        measured.append(result.labels)
        if sum(int(labels.max()) for labels in measured) >= AUTO_MIN_OBJECTS:
            break
    scale, diameter = auto_scale(measured, pipeline.model.info.working_diameter)
    log.info(
        "diameter auto: %.1f px measured on %d field(s); network scale %.3f",
        diameter,
        len(measured),
        scale,
    )
    return {"scale": scale, "measured_diameter": round(diameter, 2)}


def _refuse_other_labels(plate: Plate, fields, object_name: str, ours: dict) -> None:
    """One sentence when a field already holds ``labels/<object_name>`` made otherwise
    (another model or scale, e.g. a run into another --out, or another tool): this run
    would replace them, and the tables of the run that made them would describe lost labels."""
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
