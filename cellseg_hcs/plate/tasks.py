"""What a dask worker does for one field: predict, then label, measure and write.

A field is two tasks, each a part of the field recipe
(:class:`~cellseg_hcs.field.pipeline.FieldPipeline`): :func:`predict_field` reads the field,
prepares it and runs the network (it is the task that asks for a ``GPU`` resource);
:func:`finish_field` turns the maps into objects, measures them and writes the field's
outputs. A worker with several threads therefore measures one field while its GPU predicts
the next.

The model is loaded once per worker process and kept in :data:`_MODELS`, keyed by its
file and hash; tasks carry only the model's path, never the model.

Nothing here raises for a bad field: a field that cannot be read or has no usable pixels
comes back as a record with ``status`` ``"failed"`` and the reason, so the rest of the plate
goes on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CellSegError, ModelError
from ..io import tables
from ..io.plate import (
    PlateField,
    labels_provenance,
    labels_written_with,
    read_field,
    remove_field_labels,
    write_field_labels,
)
from ..settings import FieldSettings

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_EMPTY = "empty"
STATUS_FAILED = "failed"
FINISHED = (STATUS_OK, STATUS_EMPTY)


@dataclass(frozen=True)
class FieldJob:
    """Everything a worker needs for one field (small, picklable, no arrays)."""

    plate_path: str
    field: PlateField
    out: str
    settings: FieldSettings
    """How the field is segmented; its channels are the plate's channel names."""
    object_name: str
    features: tuple[str, ...]
    model_path: str
    model_hash: str
    channel_names: tuple[str, ...] = ()
    """The plate's channels (all measured unless the settings say which)."""
    image_number: int = 1
    """The field's place in the plate (``ImageNumber``, as CellProfiler numbers image sets)."""
    threads: int | None = None
    """Cores of the worker process: its CPU network's intra-op threads and the threads that
    measure a field (None: a GPU network, fields measured in one thread)."""
    scale: float = 1.0
    """The network runs on the field resampled by this factor (see ``diameter``)."""


# ----------------------------------------------------------------------------- model cache

_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(path: str, expected_hash: str):
    """The model at ``path``, loaded once per process; checked against the run's hash."""
    from ..model.model import load_model

    key = (path, expected_hash)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = load_model(path)
            if model.hash != expected_hash:
                raise ModelError(
                    f"the model {path} on this worker (pid {os.getpid()}) has hash "
                    f"{model.hash}, not the run's {expected_hash}."
                )
            _MODELS[key] = model
            log.info("loaded model %s (%s) in process %d", path, expected_hash, os.getpid())
        return model


def remember_model(path: str, model) -> None:
    """Put an already loaded model in this process's cache (the driver's own copy)."""
    with _MODELS_LOCK:
        _MODELS[(path, model.hash)] = model


def loaded_model_count() -> int:
    """How many models this process has loaded (for tests and diagnostics)."""
    return len(_MODELS)


def field_pipeline(job: FieldJob):
    """The field recipe of this job's model and settings, made once per worker process (the
    model's runtime is kept by the model; ``auto`` is resolved here, on the worker, since a
    cluster's workers may have a GPU that the machine submitting the run lacks)."""
    key = (job.model_path, job.model_hash, repr(job.settings), job.object_name, job.threads)
    pipeline = _PIPELINES.get(key)
    if pipeline is not None:
        return pipeline
    from ..field.measure import warm_up

    model = cached_model(job.model_path, job.model_hash)
    options = {"threads": job.threads} if job.threads else {}
    settings = job.settings
    with _MODELS_LOCK:
        runtime = model.runtime(
            settings.backend, settings.device, **settings.runtime_options, **options
        )
        pipeline = model.pipeline(
            settings,
            runtime=runtime,
            object_name=job.object_name,
            measure_threads=job.threads or 1,
        )
        # The measurement's one-time start-up, here rather than in a field's Seconds_Measure.
        warm_up(job.channel_names, job.features, job.object_name)
        _PIPELINES[key] = pipeline
    return pipeline


_PIPELINES: dict[tuple, Any] = {}


# ----------------------------------------------------------------------------- tasks


def predict_field(job: FieldJob) -> dict[str, Any]:
    """Read the field (every channel, once: the model's for the maps, all for the features),
    prepare it and predict its maps.

    Returns ``{"field": PreparedField, "maps": (K, H, W) float32, "image": FieldImage,
    "seconds": {...}, "backend": name}``, or ``{"error": sentence, "seconds": {...}}``.
    """
    from ..field.pipeline import FieldChannels

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    try:
        image = read_field(job.plate_path, job.field)
        seconds["Seconds_Read"] = time.perf_counter() - started
        pipeline = field_pipeline(job)
        try:
            prepared = pipeline.prepare(FieldChannels(image.channels, f"field {job.field.name}"))
        except CellSegError as exc:
            return {"error": str(exc), "seconds": seconds}
        started = time.perf_counter()
        maps = pipeline.predict(prepared, job.scale)
        seconds.update(prepared.seconds)
        seconds["Seconds_Predict"] = time.perf_counter() - started
        return {
            "field": prepared,
            "maps": maps,
            "image": image,
            "seconds": seconds,
            "backend": pipeline.runtime.name,
        }
    except Exception as exc:  # noqa: BLE001 - one broken field must not stop the plate
        return {"error": _sentence(job.field, exc), "seconds": seconds}


def finish_field(job: FieldJob, predicted: dict[str, Any]) -> dict[str, Any]:
    """Objects from the maps, then the field's labels, features and record, in that order.

    The record is written last: a field with a record has all its outputs.
    """
    field_ = job.field
    record = _base_record(job)
    record["backend"] = predicted.get("backend", "")
    seconds = dict(predicted.get("seconds", {}))
    out = Path(job.out)
    parquet = tables.features_path(out, field_.plate, field_.well, field_.name)
    try:
        if "error" in predicted:
            raise _FieldProblem(predicted["error"])
        pipeline = field_pipeline(job)
        prepared = predicted["field"]
        result = pipeline.compartments(
            prepared, pipeline.objects(prepared, predicted["maps"], job.scale)
        )
        seconds.update(result.seconds)

        image = predicted["image"]
        started = time.perf_counter()
        sets = list(result.objects)
        before = labels_written_with(job.plate_path, field_, result.primary)
        for name, labels in result.objects.items():
            write_field_labels(
                job.plate_path,
                field_,
                name,
                labels,
                image,
                provenance=labels_provenance_of(job),
                written_with=sets,
            )
        for name in set(before) - set(sets):  # written with the labels just replaced
            if labels_written_with(job.plate_path, field_, name) == before:
                remove_field_labels(job.plate_path, field_, name)
        seconds["Seconds_WriteLabels"] = time.perf_counter() - started

        metadata = {
            "Metadata_Plate": field_.plate,
            "Metadata_Well": field_.well,
            "Metadata_Site": field_.site,
            "ImageNumber": job.image_number,
        }
        pipeline.measure(prepared, result, job.features, metadata)
        seconds["Seconds_Measure"] = result.seconds["Seconds_Measure"]
        record["note"] = "; ".join(result.notes)
        table = tables.with_object_metadata(result.features)

        started = time.perf_counter()
        for name, own in result.tables.items():  # before the cells' table: a field whose
            tables.write_parquet(  # cells' table exists has every table
                tables.features_path(out, field_.plate, field_.well, field_.name, name),
                tables.with_object_metadata(own),
            )
        tables.write_parquet(parquet, table)
        seconds["Seconds_WriteFeatures"] = time.perf_counter() - started

        record.update(Height=int(result.labels.shape[0]), Width=int(result.labels.shape[1]))
        for name, labels in result.objects.items():
            record[f"Count_{name}"] = int(labels.max())
        if result.count:
            record["status"] = STATUS_OK
        else:
            record["status"] = STATUS_EMPTY
            record["error"] = "; ".join(result.notes) or "no objects found"
    except Exception as exc:  # noqa: BLE001 - recorded, and the plate goes on
        record["status"] = STATUS_FAILED
        record["error"] = str(exc) if isinstance(exc, _FieldProblem) else _sentence(field_, exc)
        tables.remove_field_tables(out, field_.plate, field_.well, field_.name)
    seconds["Seconds_Total"] = sum(v for k, v in seconds.items() if k != "Seconds_Total")
    record.update({k: round(v, 4) for k, v in seconds.items()})
    tables.write_json(tables.status_path(out, field_.name), record)
    return record


def failed_record(job: FieldJob, error: str) -> dict[str, Any]:
    """The record of a field whose tasks never finished (e.g. every worker running it died)."""
    record = _base_record(job)
    record.update(status=STATUS_FAILED, error=error)
    tables.remove_field_tables(Path(job.out), job.field.plate, job.field.well, job.field.name)
    tables.write_json(tables.status_path(Path(job.out), job.field.name), record)
    return record


def is_finished(job: FieldJob) -> bool:
    """Whether a field already has all its outputs from an earlier run (so it is skipped)."""
    record = tables.read_status(Path(job.out), job.field.name)
    if not record or record.get("status") not in FINISHED:
        return False
    parquet = tables.features_path(Path(job.out), job.field.plate, job.field.well, job.field.name)
    return parquet.is_file() and (
        labels_provenance(job.plate_path, job.field, job.object_name) == labels_provenance_of(job)
    )


def labels_provenance_of(job: FieldJob) -> dict[str, Any]:
    """What this job's labels are made by: a field whose labels in the plate were made by
    another model or scale (another run into another --out) is not finished for this run."""
    return {"model_hash": job.model_hash, "scale": round(float(job.scale), 6)}


class _FieldProblem(Exception):
    """A field-level problem already phrased as a sentence."""


def _base_record(job: FieldJob) -> dict[str, Any]:
    return {
        "Metadata_Plate": job.field.plate,
        "Metadata_Well": job.field.well,
        "Metadata_Site": job.field.site,
        "ImageNumber": job.image_number,
        "Metadata_FieldPath": job.field.path,
        f"Count_{job.object_name}": 0,
        "status": STATUS_FAILED,
        "error": "",
        "Height": 0,
        "Width": 0,
        "backend": "",
    }


def _sentence(field_: PlateField, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"field {field_.name} ({field_.path}): {type(exc).__name__}: {text}".rstrip(": ")
