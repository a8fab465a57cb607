"""Backends by name, the ``auto`` choice, and the tiled runtime a model predicts through.

``auto`` follows one documented order: TensorRT on a CUDA GPU, then torch on a CUDA GPU,
then whichever CPU backend was measured fastest for this model on this machine (measured
once on a small tile, remembered in the cache folder under the model's hash). When the
chosen GPU backend then cannot load the model (an engine that does not build, a CUDA
error on a first batch), :func:`load_backend` falls back along the same order, says why, and
remembers the failure (:mod:`cellseg_hcs.runtime.failures`) so no other field or worker
tries it again.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, SettingError
from ..io.atomic import write_atomic_json
from .base import Availability, Backend, default_cpu_threads, no_cuda_gpu_here
from .batching import TileBatcher
from .failures import failure_key, remember_failure, remembered_failure
from .flips import check_flips, predict_with_flips
from .onnxruntime_backend import OnnxRuntimeBackend
from .tensorrt_backend import TensorRTBackend
from .tiling import TileGrid
from .torch_backend import TorchBackend

log = logging.getLogger(__name__)

BACKENDS: dict[str, type[Backend]] = {
    "tensorrt": TensorRTBackend,
    "torch": TorchBackend,
    "onnxruntime": OnnxRuntimeBackend,
}
# What ``auto`` tries on a GPU, in order; on the CPU the candidates are measured.
AUTO_GPU_ORDER: tuple[str, ...] = ("tensorrt", "torch")
AUTO_CPU_CANDIDATES: tuple[str, ...] = ("onnxruntime", "torch")
MEASURE_TILE = 256
# Seconds a GPU batch that is not full waits for other fields' tiles (see TileBatcher).
GPU_BATCH_WAIT = 0.02


def backend_report() -> dict[str, Availability]:
    """Availability of every registered backend (for ``cellseg-hcs info``)."""
    return {name: cls.availability() for name, cls in BACKENDS.items()}


def _runs_on_gpu(availability: Availability) -> bool:
    return availability.ok and any(d.startswith("cuda") for d in availability.devices)


def choose_backend(
    backend: str = "auto", device: str | None = None, model: Any = None
) -> tuple[str, str]:
    """The backend to use and why: ``(name, reason)``.

    Parameters
    ----------
    backend:
        ``auto`` or a name in :data:`BACKENDS`.
    device:
        ``cpu``, ``cuda`` or ``cuda:N``; None lets ``auto`` take a GPU when there is one.
    model:
        With a model, ``auto`` on the CPU measures the candidates on it (once; the answer is
        cached on disk); without one it takes the first available CPU candidate.

    Examples
    --------
    >>> choose_backend("torch")
    ('torch', 'asked for')
    """
    if backend != "auto":
        if backend not in BACKENDS:
            raise SettingError(
                f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}."
            )
        availability = BACKENDS[backend].availability()
        if not availability.ok:
            raise BackendUnavailable(f"backend {backend!r} cannot run here: {availability.reason}")
        return backend, "asked for"
    remembered = _remembered_cpu_choice(device, model)
    if remembered is not None:
        return remembered
    report = backend_report()
    skipped = []
    if device is None or device.startswith("cuda"):
        for name in AUTO_GPU_ORDER:
            if _runs_on_gpu(report[name]):
                return name, f"{name} is the fastest backend available on a CUDA GPU"
            skipped.append(f"{name}: {(report[name].reason or 'no CUDA GPU').rstrip('.')}")
    if device is not None and device.startswith("cuda"):
        raise BackendUnavailable(
            f"device {device!r} asked for, but no backend can use a CUDA "
            f"GPU here ({'; '.join(skipped)})."
        )
    candidates = [name for name in AUTO_CPU_CANDIDATES if report[name].ok]
    if not candidates:
        raise BackendUnavailable(
            "no inference backend can run here: "
            + "; ".join(f"{name}: {a.reason.rstrip('.')}" for name, a in report.items())
            + "."
        )
    why_not_gpu = f"no GPU backend ({'; '.join(skipped)})" if skipped else "device cpu asked for"
    if model is None or len(candidates) == 1:
        return candidates[0], f"{why_not_gpu}; {candidates[0]} is the first CPU candidate"
    return _fastest(why_not_gpu, fastest_cpu_backend(model, candidates))


def _fastest(why_not_gpu: str, speeds: dict[str, float]) -> tuple[str, str]:
    """The fastest CPU backend of measured ``speeds``, and why it was chosen."""
    best = max(speeds, key=speeds.get)
    measured = ", ".join(f"{name} {speed:.1f}" for name, speed in speeds.items())
    return best, (
        f"{why_not_gpu}; {best} measured fastest on this CPU for this model "
        f"(MP/s on a {MEASURE_TILE}x{MEASURE_TILE} tile: {measured})"
    )


# The package each backend needs: whether it is installed is known without importing it.
PACKAGES = {"tensorrt": "tensorrt", "torch": "torch", "onnxruntime": "onnxruntime"}


def _remembered_cpu_choice(device: str | None, model: Any) -> tuple[str, str] | None:
    """``auto``'s answer on a machine with no NVIDIA GPU, from the speeds measured earlier for
    this model, or None. Asks no backend whether it runs (that would import PyTorch): a model
    whose ONNX export is cached then runs on onnxruntime without importing it."""
    from importlib.util import find_spec

    if model is None or device not in (None, "cpu") or not no_cuda_gpu_here():
        return None
    candidates = [name for name in AUTO_CPU_CANDIDATES if find_spec(PACKAGES[name]) is not None]
    speeds = cached_cpu_speeds(model, candidates) if len(candidates) > 1 else None
    if not speeds:
        return None
    return _fastest("device cpu asked for" if device else "no NVIDIA GPU on this machine", speeds)


def _choice_cache_key(model: Any, candidates: Sequence[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    # Package versions from metadata, not imports: the compiled path must not import torch.
    versions = ",".join(f"{name}={installed(name)}" for name in candidates)
    return (
        f"{model.hash}|{versions}|threads={default_cpu_threads()}|"
        f"{platform.machine()}|{os.cpu_count()}"
    )


def _choice_cache_path():
    from .export import cache_dir

    return cache_dir() / "auto-backend.json"


def _read_choices() -> dict:
    try:
        return json.loads(_choice_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def cached_cpu_speeds(model: Any, candidates: Sequence[str]) -> dict[str, float] | None:
    """The speeds measured earlier for this model, backends and machine, or None."""
    known = _read_choices().get(_choice_cache_key(model, candidates))
    if not isinstance(known, dict) or set(known) != set(candidates):
        return None
    return {name: float(speed) for name, speed in known.items()}


def fastest_cpu_backend(model: Any, candidates: Sequence[str]) -> dict[str, float]:
    """Megapixels per second of each CPU backend on this model, measured once and cached.

    The cache (``auto-backend.json`` in the cache folder) is keyed by the model hash, the
    backend versions, the thread count and the machine, so a new model or upgrade re-measures.
    """
    cached = cached_cpu_speeds(model, candidates)
    if cached is not None:
        return cached
    speeds = {
        name: measure_backend(
            BACKENDS[name].load(model, "cpu"),
            model.info.in_channels,
            model.multiple,
        )
        for name in candidates
    }
    known = _read_choices()
    known[_choice_cache_key(model, candidates)] = speeds
    path = _choice_cache_path()
    try:
        write_atomic_json(path, known)
    except OSError as exc:  # a read-only cache only costs a re-measurement next time
        log.info("cannot cache the backend choice at %s (%s)", path, exc)
    return speeds


def measure_backend(
    backend: Backend, channels: int, multiple: int = 1, tile: int = MEASURE_TILE, repeats: int = 3
) -> float:
    """Best-of-``repeats`` megapixels per second of a backend on one random tile."""
    side = -(-tile // multiple) * multiple
    batch = np.random.default_rng(0).random((1, channels, side, side), dtype=np.float32)
    backend.predict(batch)  # warm-up: first runs allocate and pick kernels
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        backend.predict(batch)
        best = min(best, time.perf_counter() - started)
    return side * side / 1e6 / best


def pad_to_multiple(batch: np.ndarray, multiple: int) -> np.ndarray:
    """Pad NCHW tiles at the bottom and right to a multiple, as the network itself would.

    Reflect where the tile is large enough, else replicate: the UNet's own rule, so every
    backend sees exactly the input the torch network pads to internally.
    """
    height, width = batch.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return batch
    mode = "reflect" if height > pad_h and width > pad_w else "edge"
    return np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode=mode)


def load_backend(
    model: Any, backend: str = "auto", device: str | None = None, **options: Any
) -> tuple[Backend, str, str]:
    """The loaded backend for ``model``, its name and why it was taken.

    A backend asked for by name is loaded or fails with its own sentence. ``auto`` takes
    :func:`choose_backend`'s answer; when that is a GPU backend and it cannot load the model
    or run a first tiny batch, ``auto`` tries the next GPU backend (TensorRT, then torch on
    CUDA), then the CPU (unless a ``cuda`` device was asked for), logs why, and remembers
    the failure for this model and machine (in the process, and on disk for failures that
    will recur), so later runtimes skip it at once.

    Examples
    --------
    >>> backend, name, reason = load_backend(model, "auto")  # doctest: +SKIP
    >>> name, reason  # doctest: +SKIP
    ('torch', 'auto fell back to torch: tensorrt: TensorRT 11.1.0 could not build ...')
    """
    name, reason = choose_backend(backend, device, model)
    if backend != "auto" or not _gpu_choice(name, device):
        return BACKENDS[name].load(model, device, **options), name, reason
    report = backend_report()
    later = AUTO_GPU_ORDER[AUTO_GPU_ORDER.index(name) + 1 :]
    candidates = [name, *(other for other in later if _runs_on_gpu(report[other]))]
    failed: list[str] = []
    for candidate in candidates:
        loaded = _try_gpu_backend(candidate, model, device, options, failed)
        if loaded is not None:
            if not failed:
                return loaded, candidate, reason
            return loaded, candidate, f"auto fell back to {candidate}: {'; '.join(failed)}"
    if device is not None and device.startswith("cuda"):
        raise BackendUnavailable(
            f"device {device!r} asked for, but no backend could run the model on it "
            f"({'; '.join(failed)})."
        )
    cpu_name, cpu_reason = choose_backend("auto", "cpu", model)
    loaded = BACKENDS[cpu_name].load(model, "cpu", **options)
    return loaded, cpu_name, f"auto fell back to the CPU ({'; '.join(failed)}); {cpu_reason}"


def _gpu_choice(name: str, device: str | None) -> bool:
    """Whether ``auto``'s answer is a backend on a GPU (the ones that may fail to load)."""
    return (
        name in AUTO_GPU_ORDER and device != "cpu" and _runs_on_gpu(BACKENDS[name].availability())
    )


def _try_gpu_backend(
    name: str, model: Any, device: str | None, options: dict[str, Any], failed: list[str]
) -> Backend | None:
    """The GPU backend loaded and run on one tiny batch, or None with the reason appended."""
    key = failure_key(name, model, device, options)
    known = remembered_failure(key)
    if known is not None:
        failed.append(f"{name} failed here before: {known.rstrip('.')}")
        return None
    try:
        loaded = BACKENDS[name].load(model, device, **options)
        side = max(int(model.multiple), 1)
        loaded.predict(np.zeros((1, model.info.in_channels, side, side), np.float32))
        return loaded
    except BackendUnavailable as exc:  # will fail the same way next time: remember on disk
        why = str(exc)
        remember_failure(key, why)
    except Exception as exc:  # e.g. CUDA out of memory: may pass later, so this process only
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        remember_failure(key, why, on_disk=False)
    log.warning("backend %s cannot run the model here (%s); trying the next one", name, why)
    failed.append(f"{name}: {why.rstrip('.')}")
    return None


def run_tiles(
    backend: Backend, multiple: int, tiles: list[np.ndarray], flips: int = 1
) -> list[np.ndarray]:
    """One batch of same-shaped tiles through ``backend``, padded to the network's
    ``multiple`` and cropped back; with ``flips`` > 1, the maps are averaged over that many
    flips and rotations of the batch (:mod:`cellseg_hcs.runtime.flips`)."""

    def predict(batch: np.ndarray) -> np.ndarray:
        height, width = batch.shape[-2:]
        return backend.predict(pad_to_multiple(batch, multiple))[..., :height, :width]

    batch = np.stack(tiles).astype(np.float32, copy=False)
    return list(predict_with_flips(predict, batch, flips))


class Runtime:
    """A model's network behind a backend, with tiling and batching.

    Thread-safe: threads predicting different fields at the same time share full batches
    (the tiles of several fields run together), and each gets exactly the maps it would get
    alone.

    Parameters
    ----------
    model:
        The :class:`~cellseg_hcs.model.model.Model`.
    backend, device:
        Backend name (or ``auto``) and device (``cpu``, ``cuda:0``; None = backend's choice).
    tile_size, overlap, batch_size:
        Fields larger than ``tile_size`` are cut into tiles overlapping by at least
        ``overlap`` pixels and run ``batch_size`` tiles at a time.
    batch_wait:
        Seconds a batch that is not full may wait for the tiles of fields other threads are
        predicting at the same time (:class:`~cellseg_hcs.runtime.batching.TileBatcher`);
        default 0.02 on a GPU, 0 on the CPU.
    flips:
        Average each tile's maps over this many flips and rotations of it (1, 2, 4 or 8;
        :mod:`cellseg_hcs.runtime.flips`): as many times slower; more accurate for some models.
    backend_options:
        Passed to the backend (``threads``, ``precision``).
    """

    def __init__(
        self,
        model: Any,
        backend: str = "auto",
        device: str | None = None,
        *,
        tile_size: int = 1024,
        overlap: int = 64,
        batch_size: int = 4,
        batch_wait: float | None = None,
        flips: int = 1,
        **backend_options: Any,
    ) -> None:
        if tile_size < 16 or not 0 <= overlap < tile_size // 2 or batch_size < 1:
            raise SettingError(
                f"tile size {tile_size}, overlap {overlap} and batch size "
                f"{batch_size} must satisfy tile >= 16, 0 <= overlap < tile/2, "
                "batch >= 1."
            )
        self.flips = check_flips(flips)
        self.multiple = int(model.multiple)
        self.backend, self.name, self.reason = load_backend(
            model,
            backend,
            device,
            tile_size=tile_size,
            batch_size=batch_size,
            **backend_options,
        )
        self.tile_size = tile_size
        self.overlap = overlap
        self.batch_size = batch_size
        self.channels = len(model.info.outputs)
        on_gpu = str(self.backend.describe().get("device", "")).startswith("cuda")
        if batch_wait is None:
            batch_wait = GPU_BATCH_WAIT if on_gpu else 0.0
        # The batcher gets the backend, not a bound method of this runtime: a runtime in a
        # reference cycle (runtime -> batcher -> runtime) outlives its last user until
        # Python's next full collection, with its session (about 450 MB) in it.
        run = partial(run_tiles, self.backend, self.multiple, flips=self.flips)
        self.batcher = TileBatcher(run, batch_size, batch_wait)
        log.info("backend %s (%s): %s", self.name, self.reason, self.backend.describe())

    def describe(self) -> dict[str, str]:
        described = {**self.backend.describe(), "reason": self.reason}
        if self.flips > 1:
            described["flips"] = str(self.flips)
        return described

    def grid(self, shape: tuple[int, ...]) -> TileGrid:
        """The tiles this runtime cuts a field of this shape into."""
        return TileGrid(shape, self.tile_size, self.overlap, self.multiple)

    def predict(self, field: np.ndarray) -> np.ndarray:
        """Whole-field probability maps (K, H, W) for one normalized CYX field."""
        return self.predict_many([field])[0]

    def predict_many(self, fields: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Maps for several fields, batching same-shaped tiles across fields (and across the
        fields other threads are predicting at the same time)."""
        grids = [self.grid(f.shape) for f in fields]
        blenders = [grid.blender(self.channels) for grid in grids]
        placed = []
        tiles = []
        for index, (field, grid) in enumerate(zip(fields, grids)):
            for tile, pixels in zip(grid.tiles, grid.cut(field)):
                placed.append((index, tile))
                tiles.append(pixels)
        for (index, tile), prediction in zip(placed, self.batcher.run(tiles)):
            blenders[index].add(tile, prediction)
        return [blender.result() for blender in blenders]

    @property
    def batches(self) -> dict[int, int]:
        """How many batches of each size this runtime has run."""
        return dict(sorted(self.batcher.batch_sizes.items()))
