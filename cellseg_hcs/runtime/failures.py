"""Backends that failed to load a model here, remembered so ``auto`` does not try them again.

When ``auto``'s first choice cannot load the model (a TensorRT engine that does not build, a
CUDA provider that does not start), the runtime falls back to the next backend and records
the reason under a key built like the TensorRT engine cache's: the model's hash, the
backend and its version, the device and GPU, the tile and batch sizes and the precision. The
record is kept in this process and on disk (``backend-failures.json`` in the cache folder),
so the other workers of a plate run, and later runs, skip the backend at once instead of
exporting, parsing and failing again on every field. A new model, backend version, GPU or
setting is a new key and is tried afresh; deleting the file forgets every failure.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from ..io.atomic import write_atomic_json

log = logging.getLogger(__name__)

FILE_NAME = "backend-failures.json"
# The distributions that provide each backend (onnxruntime-gpu imports as onnxruntime).
DISTRIBUTIONS = {
    "tensorrt": (
        "tensorrt",
        "tensorrt-cu12",
        "tensorrt-cu13",
        "tensorrt-cu12-bindings",
        "tensorrt-cu13-bindings",
    ),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
}

_IN_PROCESS: dict[str, str] = {}
_LOCK = threading.Lock()


def failures_path() -> Path:
    from .export import cache_dir

    return cache_dir() / FILE_NAME


def installed_version(backend: str) -> str:
    """The installed version of a backend's package, read from metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in DISTRIBUTIONS.get(backend, (backend,)):
        try:
            return f"{name}={version(name)}"
        except PackageNotFoundError:
            continue
    return "-"


def gpu_identity(device: str | None) -> str:
    """The GPU behind a CUDA device (name and compute capability), or the device as given."""
    if not device or not device.startswith("cuda"):
        return device or "default"
    try:
        import torch

        if not torch.cuda.is_available():
            return device
        index = torch.device(device)
        major, minor = torch.cuda.get_device_capability(index)
        return f"{device}:{torch.cuda.get_device_name(index)}:sm{major}{minor}"
    except (ImportError, OSError, RuntimeError, AssertionError):
        return device


def failure_key(backend: str, model: Any, device: str | None, options: dict[str, Any]) -> str:
    """The key a failure is remembered under (like the engine cache's: every part that could
    make the same backend succeed next time is in it)."""
    return "|".join(
        [
            str(model.hash),
            backend,
            installed_version(backend),
            gpu_identity(device),
            f"tile={options.get('tile_size')}",
            f"batch={options.get('batch_size')}",
            f"precision={options.get('precision') or 'default'}",
        ]
    )


def _read() -> dict[str, str]:
    try:
        known = json.loads(failures_path().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def remembered_failure(key: str) -> str | None:
    """Why this backend failed here before (in this process or on disk), or None."""
    with _LOCK:
        if key in _IN_PROCESS:
            return _IN_PROCESS[key]
    reason = _read().get(key)
    if isinstance(reason, str):
        with _LOCK:
            _IN_PROCESS[key] = reason
        return reason
    return None


def remember_failure(key: str, reason: str, *, on_disk: bool = True) -> None:
    """Record a failure in this process and, for failures that will recur, on disk."""
    with _LOCK:
        _IN_PROCESS[key] = reason
    if not on_disk:
        return
    path = failures_path()
    known = _read()
    known[key] = reason
    try:
        write_atomic_json(path, known)
    except OSError as exc:  # a read-only cache only costs the failure again elsewhere
        log.info("cannot remember the backend failure at %s (%s)", path, exc)


def forget_in_process() -> None:
    """Forget this process's records (the disk keeps its own): as a new process would."""
    with _LOCK:
        _IN_PROCESS.clear()
