"""TensorRT backend: an engine built from the model's ONNX export, cached on disk.

Supported: TensorRT 10 and 11 (``pip install 'cellseg-hcs[gpu]'`` asks for
``tensorrt>=10,<12``; any other version is reported as unavailable, in one sentence).
The two differ in how reduced precision is asked for:

* **TensorRT 10**: the fp32 ONNX graph, and ``BuilderFlag.FP16`` lets the builder pick fp16
  kernels layer by layer (weak typing).
* **TensorRT 11** removed the precision flags: every network is strongly typed, so precision
  lives in the graph. For fp16 the export itself is typed (weights and convolutions in
  float16, input cast from float32 at the start and the logits cast back to float32 before
  the sigmoid; the result ModelOpt AutoCast gives with ``keep_io_types``), and the network is
  created with the ``STRONGLY_TYPED`` flag (ignored by 11, required for typed graphs on 10).

Any failure while building (a parse error, a missing API: ``AttributeError``, ``TypeError``,
``RuntimeError`` from the bindings) is :class:`~cellseg_hcs.errors.BackendUnavailable`, so
``auto`` falls back to the next backend and remembers why.

At run time each backend enqueues on a CUDA stream of its own, with pinned host buffers and
non-blocking copies (:mod:`cellseg_hcs.runtime.cuda`); the execution context is created
under the chosen device, engines are kept per (file, device), one ``trt.Logger`` serves the
process, and calls on one context are serialized by a lock (a context must never run two
``execute_async_v3`` at once). Input and output tensors take the engine's own data types.

Not run on these machines: TensorRT's libraries cannot be installed here and there is no
GPU. The code follows TensorRT 10's and 11's documented Python API (``Builder``,
``OnnxParser``, ``IOptimizationProfile``, ``build_serialized_network``,
``Runtime.deserialize_cuda_engine``, ``IExecutionContext.set_input_shape /
set_tensor_address / execute_async_v3``, ``ICudaEngine.get_tensor_dtype``), checked against
TensorRT 11.1's Python bindings. The tests drive every path here with stand-in ``tensorrt``
modules shaped like 10 (with ``BuilderFlag.FP16``) and like 11 (without), and with stand-in
CUDA transfers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from ..io.atomic import write_atomic_bytes
from .base import Availability, Backend
from .cuda import CudaTransfers

log = logging.getLogger(__name__)

NOT_INSTALLED = (
    "TensorRT is not installed (it needs an NVIDIA GPU and pip install 'cellseg-hcs[gpu]')."
)
SUPPORTED_MAJORS = (10, 11)
SUPPORTED_RANGE = "tensorrt>=10,<12"
WORKSPACE_BYTES = 2 << 30
# What TensorRT calls each tensor type, and PyTorch's name for it.
TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16"}
# Errors the bindings raise for an API that moved, a bad argument or a failed build.
BUILD_ERRORS = (AttributeError, TypeError, RuntimeError, ValueError)

# Engines deserialized in this process, by (file, device index): each is deserialized once
# per GPU (an engine's memory lives on the device it was deserialized on). Each key has a
# lock of its own, held while its engine is built and deserialized (minutes for a build), so
# threads wanting the same engine wait for it and others do not; the table's own lock is
# only held to look a key up. The builder takes the logger's lock, so that one is separate:
# a build under an engine's lock must not wait on a lock its own thread holds.
_ENGINES: dict[tuple[str, int], Any] = {}
_ENGINE_LOCKS: dict[tuple[str, int], threading.Lock] = {}
_ENGINES_LOCK = threading.Lock()
# One logger per process: TensorRT keeps a reference to the first logger it is given.
_LOGGERS: dict[int, tuple[Any, Any]] = {}
_LOGGERS_LOCK = threading.Lock()


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`BackendUnavailable` saying why not, in one sentence.

    A missing package raises ImportError; a package whose CUDA libraries do not load
    raises OSError; a version outside 10.x-11.x is refused: all three become the same kind
    of answer.
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(NOT_INSTALLED) from exc
    except OSError as exc:
        raise BackendUnavailable(
            f"TensorRT is installed but its libraries do not load ({exc})."
        ) from exc
    check_version(str(getattr(tensorrt, "__version__", "unknown")))
    return tensorrt


def major_version(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def check_version(version: str) -> None:
    """Refuse a TensorRT this package was not written for, in one sentence.

    Examples
    --------
    >>> check_version("10.3.0"), check_version("11.1.0")
    (None, None)
    """
    if major_version(version) not in SUPPORTED_MAJORS:
        raise BackendUnavailable(
            f"TensorRT {version} is installed, but cellseg-hcs runs TensorRT 10 and 11 only "
            f"(pip install '{SUPPORTED_RANGE}')."
        )


def strongly_typed(trt: Any) -> bool:
    """Whether precision must come from the graph: TensorRT 11 (no precision flags)."""
    flags = getattr(trt, "BuilderFlag", None)
    major = major_version(str(trt.__version__)) or 0
    return major >= 11 or not hasattr(flags, "FP16")


def trt_logger(trt: Any) -> Any:
    """The process's one ``trt.Logger`` (warnings and errors only)."""
    with _LOGGERS_LOCK:
        known = _LOGGERS.get(id(trt))
        if known is None or known[0] is not trt:
            known = (trt, trt.Logger(trt.Logger.WARNING))
            _LOGGERS[id(trt)] = known
        return known[1]


@dataclass(frozen=True)
class ShapeProfile:
    """TensorRT optimization profile for the input: smallest, typical and largest NCHW shape."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def label(self) -> str:
        """A short, file-name-safe text for cache keys: ``b1-4_16-512x512``."""
        return f"b{self.min[0]}-{self.max[0]}_{self.min[2]}-{self.max[2]}x{self.max[3]}"

    def admits(self, shape: tuple[int, ...]) -> bool:
        """Whether an input of this NCHW shape can run on an engine built with the profile."""
        return all(low <= size <= high for low, size, high in zip(self.min, shape, self.max))


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def choose_profile(channels: int, tile_size: int, batch_size: int, multiple: int) -> ShapeProfile:
    """The profile for a runtime cutting fields into ``tile_size`` tiles, ``batch_size`` at a time.

    Tiles reach the backend padded to the network's multiple, at most ``tile_size``
    (rounded up to the multiple) and at least one multiple per side (fields smaller than a
    tile); TensorRT tunes its kernels for the full batch of full tiles.

    Examples
    --------
    >>> choose_profile(1, 500, 4, 32)
    ShapeProfile(min=(1, 1, 32, 32), opt=(4, 1, 512, 512), max=(4, 1, 512, 512))
    """
    tile = round_up(max(tile_size, multiple), multiple)
    largest = (max(batch_size, 1), channels, tile, tile)
    return ShapeProfile(min=(1, channels, multiple, multiple), opt=largest, max=largest)


def choose_precision(compute_capability: tuple[int, int], asked: str | None = None) -> str:
    """``fp16`` on GPUs with fast half precision (tensor cores: compute capability >= 7.0).

    Examples
    --------
    >>> choose_precision((8, 6)), choose_precision((6, 1)), choose_precision((8, 6), "fp32")
    ('fp16', 'fp32', 'fp32')
    """
    if asked is not None:
        if asked not in ("fp16", "fp32"):
            raise BackendUnavailable(f"TensorRT precision must be fp16 or fp32, not {asked!r}.")
        return asked
    return "fp16" if tuple(compute_capability) >= (7, 0) else "fp32"


def engine_cache_key(
    model_hash: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    profile: ShapeProfile,
) -> str:
    """The engine's file name: an engine is only valid for exactly these five things.

    Examples
    --------
    >>> engine_cache_key("28853e5b02c8d942", (8, 6), "10.3.0", "fp16",
    ...                  choose_profile(1, 512, 4, 16))
    '28853e5b02c8d942-sm86-trt10.3.0-fp16-b1-4_16-512x512.engine'
    """
    major, minor = compute_capability
    return f"{model_hash}-sm{major}{minor}-trt{trt_version}-{precision}-{profile.label()}.engine"


def build_engine(
    trt: Any,
    onnx_for: Callable[[str], bytes],
    profile: ShapeProfile,
    precision: str,
    input_name: str = "image",
) -> bytes:
    """Serialized TensorRT engine for the model's ONNX graph, built with one profile.

    ``onnx_for(precision)`` gives the graph: on TensorRT 11 the graph typed in ``precision``
    (strong typing), on TensorRT 10 always the fp32 graph (fp16 through the builder flag).
    """
    typed = strongly_typed(trt)
    try:
        logger = trt_logger(trt)
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_for(precision if typed else "fp32")):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"TensorRT cannot parse the model's ONNX export ({errors}).")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if precision == "fp16" and not typed:
            config.set_flag(trt.BuilderFlag.FP16)
        shapes = builder.create_optimization_profile()
        shapes.set_shape(input_name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(shapes)
        serialized = builder.build_serialized_network(network, config)
    except BUILD_ERRORS as exc:
        raise BackendUnavailable(
            f"TensorRT {trt.__version__} could not build an engine for this model "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    if serialized is None:
        raise BackendUnavailable("TensorRT could not build an engine for this model on this GPU.")
    return bytes(serialized)


def cached_engine(trt: Any, path: Path, build: Callable[[], bytes], device_index: int = 0) -> Any:
    """The deserialized engine at ``path`` for one GPU, built with ``build()`` if absent.

    Deserialized once per process and device (the caller makes that device current);
    building writes to a temporary name first, so concurrent workers never read half an
    engine.
    """
    key = (str(path), int(device_index))
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        engine_lock = _ENGINE_LOCKS.setdefault(key, threading.Lock())
    logger = trt_logger(trt)
    with engine_lock:
        with _ENGINES_LOCK:
            if key in _ENGINES:  # another thread made it while this one waited
                return _ENGINES[key]
        if not path.is_file():
            log.warning(
                "building a TensorRT engine for this model and GPU (once; cached at %s)", path
            )
            # Under a name of its own: workers in other processes (one per GPU, or on nodes
            # sharing a home folder) may build the same engine at the same time.
            write_atomic_bytes(path, build())
        try:
            engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        except BUILD_ERRORS as exc:
            raise BackendUnavailable(
                f"{path}: TensorRT cannot load this cached engine ({type(exc).__name__}: "
                f"{exc}); delete it to rebuild."
            ) from exc
        if engine is None:
            raise BackendUnavailable(
                f"{path}: a cached TensorRT engine that does not load; delete it to rebuild."
            )
        with _ENGINES_LOCK:
            _ENGINES[key] = engine
        return engine


def gpu_capability(device: str) -> tuple[int, int]:
    """The compute capability of a CUDA device, or BackendUnavailable when there is none."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise BackendUnavailable(f"TensorRT runs on a CUDA GPU, not on {device!r}.")
    return tuple(torch.cuda.get_device_capability(torch.device(device)))


def device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def tensor_dtype(trt_dtype: Any, torch_module: Any) -> Any:
    """PyTorch's dtype for a TensorRT tensor type (float32, float16 or bfloat16)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in TORCH_DTYPES:
        raise BackendUnavailable(
            f"the TensorRT engine has a {name} input or output; cellseg-hcs feeds "
            f"{', '.join(TORCH_DTYPES)} only."
        )
    return getattr(torch_module, TORCH_DTYPES[name])


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built from the model's ONNX export on ``cuda[:N]``.

    The engine is built once per (model, GPU compute capability, TensorRT version,
    precision, shape profile), kept under the cache folder (``$CELLSEG_HCS_CACHE``), and
    deserialized once per process and GPU. FP16 where the GPU has fast half precision.
    Not run on these machines (no TensorRT, no GPU): see the module docstring.
    """

    name = "tensorrt"

    def __init__(
        self,
        trt: Any,
        engine: Any,
        device: str,
        precision: str,
        profile: ShapeProfile,
        transfers: Any,
    ) -> None:
        self.engine = engine
        self.transfers = transfers
        self.device = device
        self.precision = precision
        self.profile = profile
        self.version = trt.__version__
        self.typing = "strong" if strongly_typed(trt) else "weak"
        self._lock = threading.Lock()  # one execute_async_v3 at a time on this context
        try:
            with transfers.on_device():  # the context's memory on the chosen GPU
                self.context = engine.create_execution_context()
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            modes = {name: engine.get_tensor_mode(name) for name in names}
            self.input_name = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
            self.output_name = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)
            self.input_dtype = tensor_dtype(
                engine.get_tensor_dtype(self.input_name), transfers.torch
            )
            self.output_dtype = tensor_dtype(
                engine.get_tensor_dtype(self.output_name), transfers.torch
            )
        except (*BUILD_ERRORS, StopIteration) as exc:
            raise BackendUnavailable(
                f"TensorRT {self.version} cannot run the engine ({type(exc).__name__}: {exc})."
            ) from exc
        if self.context is None:
            raise BackendUnavailable(
                f"TensorRT could not create an execution context on {device} (GPU memory full?)."
            )

    @classmethod
    def availability(cls) -> Availability:
        try:
            trt = import_tensorrt()
        except BackendUnavailable as exc:
            return Availability(False, str(exc))
        try:
            import torch

            gpus = torch.cuda.device_count()
        except (ImportError, OSError, RuntimeError):
            gpus = 0
        if not gpus:
            return Availability(
                False, "TensorRT is installed, but no CUDA GPU is visible.", version=trt.__version__
            )
        return Availability(
            True, version=trt.__version__, devices=tuple(f"cuda:{i}" for i in range(gpus))
        )

    @classmethod
    def default_device(cls) -> str:
        return "cuda:0"

    @classmethod
    def load(
        cls,
        model: Any,
        device: str | None = None,
        *,
        tile_size: int = 512,
        batch_size: int = 4,
        precision: str | None = None,
        **options: Any,
    ) -> TensorRTBackend:
        from .export import cache_dir, onnx_bytes

        trt = import_tensorrt()
        device = device or cls.default_device()
        capability = gpu_capability(device)
        precision = choose_precision(capability, precision)
        profile = choose_profile(model.info.in_channels, tile_size, batch_size, model.multiple)
        key = engine_cache_key(model.hash, capability, trt.__version__, precision, profile)
        try:
            transfers = CudaTransfers(device)
            with transfers.on_device():
                engine = cached_engine(
                    trt,
                    cache_dir() / "tensorrt" / key,
                    lambda: build_engine(
                        trt, lambda typed: onnx_bytes(model, precision=typed), profile, precision
                    ),
                    device_index(device),
                )
        except BUILD_ERRORS as exc:  # e.g. CUDA errors from the stream or the export
            raise BackendUnavailable(
                f"TensorRT could not be set up on {device} ({type(exc).__name__}: {exc})."
            ) from exc
        return cls(trt, engine, device, precision, profile, transfers)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if not self.profile.admits(batch.shape):
            raise BackendUnavailable(
                f"a batch of shape {batch.shape} is outside the TensorRT "
                f"engine's profile {self.profile}."
            )
        transfers = self.transfers
        with self._lock, transfers.on_device():
            inputs = transfers.to_device(batch, self.input_dtype)
            shape = tuple(int(s) for s in inputs.shape)
            if not self.context.set_input_shape(self.input_name, shape):
                raise BackendUnavailable(
                    f"TensorRT refused an input of shape {shape} (engine profile "
                    f"{self.profile.label()})."
                )
            output_shape = tuple(int(s) for s in self.context.get_tensor_shape(self.output_name))
            outputs = transfers.empty(output_shape, self.output_dtype)
            self.context.set_tensor_address(self.input_name, int(inputs.data_ptr()))
            self.context.set_tensor_address(self.output_name, int(outputs.data_ptr()))
            if not self.context.execute_async_v3(transfers.handle):
                raise BackendUnavailable("TensorRT failed to run the engine on this batch.")
            return transfers.to_host(outputs)

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "version": self.version,
            "profile": self.profile.label(),
            "typing": self.typing,
        }
