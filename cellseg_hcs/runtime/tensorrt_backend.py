"""TensorRT backend: an engine built from the model's ONNX export, cached on disk.

Not run on these machines: TensorRT's libraries cannot be installed here and there is no
GPU. The code follows TensorRT 10's documented Python API (``Builder``, ``OnnxParser``,
``IOptimizationProfile``, ``build_serialized_network``, ``Runtime.deserialize_cuda_engine``,
``IExecutionContext.set_input_shape / set_tensor_address / execute_async_v3``), with
device buffers and the CUDA stream taken from PyTorch. What the tests cover here: the
engine cache key, the shape profile and precision choice, building and caching with a
stand-in ``tensorrt`` module, the fallback of ``auto`` and the sentence a user sees.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from ..io.atomic import write_atomic_bytes
from .base import Availability, Backend

log = logging.getLogger(__name__)

NOT_INSTALLED = (
    "TensorRT is not installed (it needs an NVIDIA GPU and pip install 'cellseg-hcs[gpu]')."
)
WORKSPACE_BYTES = 2 << 30

# Engines deserialized in this process, by cache key: each is deserialized once.
_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`BackendUnavailable` saying why not, in one sentence.

    A missing package raises ImportError; a package whose CUDA libraries do not load
    raises OSError: both become the same kind of answer.
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(NOT_INSTALLED) from exc
    except OSError as exc:
        raise BackendUnavailable(
            f"TensorRT is installed but its libraries do not load ({exc})."
        ) from exc
    return tensorrt


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
    trt: Any, onnx: bytes, profile: ShapeProfile, precision: str, input_name: str = "image"
) -> bytes:
    """Serialized TensorRT engine for an ONNX graph, built with one optimization profile."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT cannot parse the model's ONNX export ({errors}).")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    shapes = builder.create_optimization_profile()
    shapes.set_shape(input_name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable("TensorRT could not build an engine for this model on this GPU.")
    return bytes(serialized)


def cached_engine(trt: Any, path: Path, build: Any) -> Any:
    """The deserialized engine at ``path``, built with ``build()`` and written there if absent.

    Deserialized once per process and kept; building writes to a temporary name first,
    so concurrent workers never read half an engine.
    """
    key = str(path)
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        if not path.is_file():
            log.warning(
                "building a TensorRT engine for this model and GPU (once; cached at %s)", path
            )
            # Under a name of its own: workers in other processes (one per GPU, or on nodes
            # sharing a home folder) may build the same engine at the same time.
            write_atomic_bytes(path, build())
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailable(
                f"{path}: a cached TensorRT engine that does not load; delete it to rebuild."
            )
        _ENGINES[key] = engine
        return engine


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built from the model's ONNX export on ``cuda[:N]``.

    The engine is built once per (model, GPU compute capability, TensorRT version,
    precision, shape profile), kept under the cache folder (``$CELLSEG_HCS_CACHE``), and
    deserialized once per process. FP16 where the GPU has fast half precision.
    Not run on these machines (no TensorRT, no GPU): see the module docstring.
    """

    name = "tensorrt"

    def __init__(
        self, trt: Any, engine: Any, device: str, precision: str, profile: ShapeProfile
    ) -> None:
        import torch

        self.engine = engine
        self.context = engine.create_execution_context()
        self.device = torch.device(device)
        self.precision = precision
        self.profile = profile
        self.version = trt.__version__
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {name: engine.get_tensor_mode(name) for name in names}
        self.input_name = next(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)

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
        import torch

        from .export import cache_dir, onnx_bytes

        trt = import_tensorrt()
        device = device or cls.default_device()
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise BackendUnavailable(f"TensorRT runs on a CUDA GPU, not on {device!r}.")
        capability = torch.cuda.get_device_capability(torch.device(device))
        precision = choose_precision(capability, precision)
        multiple = int(getattr(model.network, "multiple", 1))
        profile = choose_profile(model.info.in_channels, tile_size, batch_size, multiple)
        key = engine_cache_key(model.hash, capability, trt.__version__, precision, profile)
        with torch.cuda.device(torch.device(device)):
            engine = cached_engine(
                trt,
                cache_dir() / "tensorrt" / key,
                lambda: build_engine(trt, onnx_bytes(model), profile, precision),
            )
        return cls(trt, engine, device, precision, profile)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if not self.profile.admits(batch.shape):
            raise BackendUnavailable(
                f"a batch of shape {batch.shape} is outside the TensorRT "
                f"engine's profile {self.profile}."
            )
        with torch.cuda.device(self.device):
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(
                self.device, non_blocking=False
            )
            self.context.set_input_shape(self.input_name, tuple(inputs.shape))
            shape = tuple(self.context.get_tensor_shape(self.output_name))
            outputs = torch.empty(shape, dtype=torch.float32, device=self.device)
            self.context.set_tensor_address(self.input_name, inputs.data_ptr())
            self.context.set_tensor_address(self.output_name, outputs.data_ptr())
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise BackendUnavailable("TensorRT failed to run the engine on this batch.")
            stream.synchronize()
        return outputs.cpu().numpy()

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "version": self.version,
            "profile": self.profile.label(),
        }
