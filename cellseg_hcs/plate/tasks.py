"""What a dask worker does for one field: predict, then label, measure and write.

A field is two tasks. :func:`predict_field` reads the segmentation channel and runs the
network (it is the task that asks for a ``GPU`` resource); :func:`finish_field` turns the
maps into labels, measures every object and writes the field's outputs. A worker with
several threads therefore measures one field while its GPU predicts the next.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..field.scale import predict_at_scale
from ..io import tables
from ..io.plate import PlateField, labels_provenance, read_field, write_field_labels

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
    channels: tuple[str, ...]
    """The channels the model reads, in the model's order."""
    object_name: str
    features: tuple[str, ...]
    model_path: str
    model_hash: str
    backend: str = "auto"
    device: str | None = None
    threads: int | None = None
    postprocess: dict[str, Any] = field(default_factory=dict)
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


def _runtime(model, job: FieldJob):
    """The model's runtime in this process, made once (``Model.runtime`` keeps it); ``auto``
    is resolved here, on the worker, since a cluster's workers may have a GPU that the
    machine submitting the run lacks."""
    options = {"threads": job.threads} if job.threads else {}
    with _MODELS_LOCK:
        return model.runtime(job.backend, job.device, **options)


# ----------------------------------------------------------------------------- tasks


def check_pixels(plane: np.ndarray, field_name: str) -> str | None:
    """Why a field's pixels cannot be segmented, or None when they can."""
    if plane.dtype.kind not in "uif":
        return f"field {field_name} has pixel type {plane.dtype}, not an integer or float image."
    if plane.ndim != 2 or min(plane.shape) < 8:
        return f"field {field_name} has shape {plane.shape}, not a 2-D image of 8 pixels or more."
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        return f"field {field_name} has NaN or infinite pixels."
    return None


def model_planes(image, channels, field_name: str) -> tuple[np.ndarray | None, str | None]:
    """The model's channels of a read field, stacked (YX for one, CYX for several), or None
    and why they cannot be segmented."""
    planes = [image.channels[name] for name in channels]
    for plane in planes:
        problem = check_pixels(plane, field_name)
        if problem:
            return None, problem
    return (planes[0] if len(planes) == 1 else np.stack(planes)), None


def model_input(model, stacked: np.ndarray) -> np.ndarray:
    """The normalized network input of :func:`model_planes`' stack."""
    return model.prepare(stacked, 0 if stacked.ndim == 2 else None)


def predict_field(job: FieldJob) -> dict[str, Any]:
    """Read the field (every channel, once: the model's for the maps, all for the features)
    and predict its maps.

    Returns ``{"maps": (K, H, W) float32, "input": the normalized network input (CYX) when
    the post-processing reads it, else None, "image": FieldImage, "seconds": {...}}``, or
    ``{"error": sentence}``.
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    try:
        image = read_field(job.plate_path, job.field)
        seconds["Seconds_Read"] = time.perf_counter() - started
        stacked, problem = model_planes(image, job.channels, job.field.name)
        if problem:
            return {"error": problem, "seconds": seconds}
        blank = not np.any(stacked)
        model = cached_model(job.model_path, job.model_hash)
        runtime = _runtime(model, job)
        started = time.perf_counter()
        if blank:  # an empty well or a failed acquisition: nothing to predict
            field_input = np.zeros((1, *image.shape), np.float32)
            maps = np.zeros((len(model.info.outputs), *image.shape), np.float32)
        else:
            field_input = model_input(model, stacked)
            maps = predict_at_scale(runtime, field_input, job.scale)
        seconds["Seconds_Predict"] = time.perf_counter() - started
        # The input travels on only where post-processing reads intensities (joining).
        merging = job.postprocess.get("merge_height", 0) > 0
        return {
            "maps": maps,
            "input": field_input if merging else None,
            "image": image,
            "blank": blank,
            "seconds": seconds,
            "backend": runtime.name,
        }
    except Exception as exc:  # noqa: BLE001 - one broken field must not stop the plate
        return {"error": _sentence(job.field, exc), "seconds": seconds}


def finish_field(job: FieldJob, predicted: dict[str, Any]) -> dict[str, Any]:
    """Labels from the maps, then the field's labels, features and record, in that order.

    The record is written last: a field with a record has all its outputs.
    """
    from ..field.measure import measure_objects
    from ..field.postprocess import PostprocessSettings, maps_to_labels

    field_ = job.field
    record = _base_record(job)
    record["backend"] = predicted.get("backend", "")
    seconds = dict(predicted.get("seconds", {}))
    out = Path(job.out)
    parquet = tables.features_path(out, field_.plate, field_.well, field_.name)
    try:
        if "error" in predicted:
            raise _FieldProblem(predicted["error"])
        maps = predicted["maps"]
        started = time.perf_counter()
        labels = maps_to_labels(
            maps[0], maps[1], PostprocessSettings(**job.postprocess), image=predicted.get("input")
        )
        seconds["Seconds_Postprocess"] = time.perf_counter() - started

        image = predicted["image"]
        started = time.perf_counter()
        write_field_labels(
            job.plate_path,
            field_,
            job.object_name,
            labels,
            image,
            provenance=labels_provenance_of(job),
        )
        seconds["Seconds_WriteLabels"] = time.perf_counter() - started

        started = time.perf_counter()
        metadata = {
            "Metadata_Plate": field_.plate,
            "Metadata_Well": field_.well,
            "Metadata_Site": field_.site,
        }
        table = measure_objects(
            labels,
            image.channels,
            object_name=job.object_name,
            features=job.features,
            metadata=metadata,
        )
        seconds["Seconds_Measure"] = time.perf_counter() - started

        started = time.perf_counter()
        tables.write_parquet(parquet, table)
        seconds["Seconds_WriteFeatures"] = time.perf_counter() - started

        count = len(table)
        record.update(Height=int(labels.shape[0]), Width=int(labels.shape[1]))
        record[f"Count_{job.object_name}"] = count
        if count:
            record["status"] = STATUS_OK
        else:
            record["status"] = STATUS_EMPTY
            record["error"] = (
                "the image is blank (every pixel is 0)"
                if predicted.get("blank")
                else "no objects found"
            )
    except Exception as exc:  # noqa: BLE001 - recorded, and the plate goes on
        record["status"] = STATUS_FAILED
        record["error"] = str(exc) if isinstance(exc, _FieldProblem) else _sentence(field_, exc)
        parquet.unlink(missing_ok=True)  # a failed field has no features part
    seconds["Seconds_Total"] = sum(v for k, v in seconds.items() if k != "Seconds_Total")
    record.update({k: round(v, 4) for k, v in seconds.items()})
    tables.write_json(tables.status_path(out, field_.name), record)
    return record


def failed_record(job: FieldJob, error: str) -> dict[str, Any]:
    """The record of a field whose tasks never finished (e.g. every worker running it died)."""
    record = _base_record(job)
    record.update(status=STATUS_FAILED, error=error)
    tables.features_path(Path(job.out), job.field.plate, job.field.well, job.field.name).unlink(
        missing_ok=True
    )
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
