"""Stand-ins for what these machines lack (TensorRT, a CUDA GPU), shaped like the real APIs.

Each records what it was asked to do, so a test can state what the GPU code must do with the
real thing: which stream it enqueues on, under which device it creates contexts, which data
types it feeds, whether it ever runs two batches on one execution context at once.

* :func:`tensorrt_module` - a ``tensorrt`` module like TensorRT 10 (``BuilderFlag.FP16``) or
  11 (no precision flags, strong typing only), building "engines" that compute a simple
  known function of the input on CPU tensors.
* :class:`Transfers` - :class:`cellseg_hcs.runtime.cuda.CudaTransfers` on CPU tensors.
* :class:`RecordingTorch` - just enough of ``torch`` for ``CudaTransfers`` to be driven on
  a machine without CUDA, recording streams, pinned memory and blocking copies.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
import types

import numpy as np
import torch

# ----------------------------------------------------------------------------- TensorRT


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    BF16 = 2


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


def engine_output(inputs: torch.Tensor) -> torch.Tensor:
    """What every stand-in engine computes: two maps from channel 0 (per tile, no mixing)."""
    first = inputs[:, :1].float()
    return torch.cat([torch.sigmoid(first), torch.sigmoid(-first)], dim=1)


class Engine:
    """A deserialized engine: tensors ``image`` -> ``probabilities`` of the given dtypes."""

    def __init__(self, record: dict, dtype: DataType = DataType.FLOAT) -> None:
        self.record = record
        self.dtype = dtype
        self.num_io_tensors = 2

    def get_tensor_name(self, index: int) -> str:
        return ("image", "probabilities")[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtype

    def create_execution_context(self) -> Context:
        self.record["contexts_created_on"].append(self.record["current_device"][-1])
        return Context(self.record)


class Context:
    """An execution context; reads and writes tensors through the stand-in transfers."""

    def __init__(self, record: dict) -> None:
        self.record = record
        self.shape = None
        self.addresses: dict[str, int] = {}
        self.running = 0
        self.accept_shapes = record.setdefault("accept_shapes", True)

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        self.shape = tuple(shape)
        return self.record["accept_shapes"]

    def get_tensor_shape(self, name: str) -> tuple:
        batch, _, height, width = self.shape
        return (batch, 2, height, width)

    def set_tensor_address(self, name: str, address: int) -> None:
        self.addresses[name] = address

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.running += 1
        self.record["most_at_once"] = max(self.record.get("most_at_once", 0), self.running)
        self.record["streams"].append(stream_handle)
        time.sleep(0.002)  # long enough for a second thread to enter if nothing stops it
        tensors = self.record["tensors"]
        inputs = tensors[self.addresses["image"]]
        outputs = tensors[self.addresses["probabilities"]]
        outputs.copy_(engine_output(inputs).to(outputs.dtype))
        self.running -= 1
        return True


def tensorrt_module(version: str = "10.3.0", record: dict | None = None) -> types.ModuleType:
    """A ``tensorrt`` module of this version: 10.x has ``BuilderFlag.FP16``, 11.x has not."""
    record = record if record is not None else {}
    record.setdefault("loggers", 0)
    record.setdefault("current_device", ["cuda:0"])
    record.setdefault("contexts_created_on", [])
    record.setdefault("streams", [])
    record.setdefault("tensors", {})
    record.setdefault("events", [])
    head = version.split(".")[0]
    major = int(head) if head.isdigit() else 0
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.record = record

    class Logger:
        WARNING = 2

        def __init__(self, level):
            record["loggers"] += 1

    flags = {"TF32": 7} if major >= 11 else {"FP16": 0, "TF32": 7}
    module.BuilderFlag = types.SimpleNamespace(**flags)
    module.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    module.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    module.TensorIOMode = TensorIOMode
    module.DataType = DataType

    class Config:
        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            record["events"].append(f"set_flag {flag}")

        def add_optimization_profile(self, profile):
            record["profile"] = profile.shapes

    class Profile:
        def set_shape(self, name, low, opt, high):
            self.shapes = (name, tuple(low), tuple(opt), tuple(high))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            record["events"].append(f"create_network {flags}")
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if record.get("fail_build"):
                raise record["fail_build"]
            return b"engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse(self, graph):
            record["graphs"] = [*record.get("graphs", []), graph]
            return True

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, payload):
            record["events"].append(f"deserialize on {record['current_device'][-1]}")
            return Engine(record, record.get("engine_dtype", DataType.FLOAT))

    module.Logger = Logger
    module.Builder = Builder
    module.OnnxParser = OnnxParser
    module.Runtime = Runtime
    return module


# ----------------------------------------------------------------------------- CUDA copies


class Transfers:
    """CudaTransfers' interface on CPU tensors; tensors are found again by address, as the
    stand-in context does with ``set_tensor_address``."""

    def __init__(self, device: str, record: dict) -> None:
        self.torch = torch
        self.device = device
        self.record = record
        self.handle = 4242  # a stream of its own: never 0, the legacy default stream
        self.stream = types.SimpleNamespace(
            synchronize=lambda: record.setdefault("synchronized", []).append(self.handle)
        )
        self.fed: list = []
        self.allocated: list = []

    @contextlib.contextmanager
    def on_device(self):
        self.record["current_device"].append(self.device)
        try:
            yield
        finally:
            self.record["current_device"].pop()

    @contextlib.contextmanager
    def on_stream(self):
        self.record.setdefault("on_stream", 0)
        self.record["on_stream"] += 1
        yield

    def _keep(self, tensor):
        self.record["tensors"][tensor.data_ptr()] = tensor
        return tensor

    def to_device(self, batch, dtype=None):
        dtype = dtype or torch.float32
        self.fed.append(dtype)
        return self._keep(torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(dtype))

    def empty(self, shape, dtype):
        self.allocated.append(dtype)
        return self._keep(torch.empty(tuple(shape), dtype=dtype))

    def to_host(self, tensor):
        return tensor.float().contiguous().numpy().copy()


# ----------------------------------------------------------------------------- torch.cuda


class RecordingTensor:
    """A CPU tensor that remembers whether it is pinned, and records the copies made of it."""

    def __init__(self, owner: RecordingTorch, tensor: torch.Tensor, pinned: bool = False):
        self.owner = owner
        self.tensor = tensor
        self.pinned = pinned

    @property
    def shape(self):
        return self.tensor.shape

    def pin_memory(self):
        return RecordingTensor(self.owner, self.tensor.clone(), pinned=True)

    def to(self, target, non_blocking: bool = False):
        if isinstance(target, torch.dtype):
            return RecordingTensor(self.owner, self.tensor.to(target))
        self.owner.copies.append(
            {
                "to": str(target),
                "from_pinned": self.pinned,
                "non_blocking": non_blocking,
                "stream": self.owner.current_stream[-1],
            }
        )
        return RecordingTensor(self.owner, self.tensor.clone())

    def float(self):
        return RecordingTensor(self.owner, self.tensor.float())

    def contiguous(self):
        return RecordingTensor(self.owner, self.tensor.contiguous())

    def copy_(self, other, non_blocking: bool = False):
        self.owner.copies.append(
            {
                "to": "host",
                "into_pinned": self.pinned,
                "non_blocking": non_blocking,
                "stream": self.owner.current_stream[-1],
            }
        )
        self.tensor.copy_(other.tensor)
        return self

    def numpy(self):
        return self.tensor.numpy()


class RecordingTorch:
    """``torch`` for :class:`~cellseg_hcs.runtime.cuda.CudaTransfers` without a GPU."""

    float32 = torch.float32
    float16 = torch.float16
    device = torch.device

    def __init__(self) -> None:
        self.copies: list[dict] = []
        self.current_stream = ["default"]
        self.synchronized: list[str] = []
        self.streams_made: list[str] = []
        owner = self

        class Stream:
            def __init__(self, device=None):
                self.name = f"own stream {len(owner.streams_made) + 1}"
                self.cuda_stream = 1000 + len(owner.streams_made)
                owner.streams_made.append(str(device))

            def synchronize(self):
                owner.synchronized.append(self.name)

        @contextlib.contextmanager
        def use_stream(stream):
            owner.current_stream.append(stream.name)
            try:
                yield
            finally:
                owner.current_stream.pop()

        def synchronize(device=None):
            owner.synchronized.append("whole device")

        self.cuda = types.SimpleNamespace(
            Stream=Stream,
            stream=use_stream,
            device=lambda device: contextlib.nullcontext(),
            synchronize=synchronize,
        )

    def from_numpy(self, array):
        return RecordingTensor(self, torch.from_numpy(array))

    def empty(self, shape, dtype=None, device=None, pin_memory=False):
        return RecordingTensor(self, torch.empty(shape, dtype=dtype), pinned=pin_memory)


def at_once(function, threads: int = 4) -> None:
    """Call ``function`` from several threads at once and re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run():
        start.wait()
        try:
            function()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
