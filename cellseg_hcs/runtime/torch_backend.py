"""PyTorch backend: CPU or CUDA, inference mode, channels-last, autocast where it pays."""

from __future__ import annotations

import copy
import threading
from typing import Any

import numpy as np

from ..errors import BackendUnavailable, SettingError
from .base import Availability, Backend, default_cpu_threads

PRECISIONS = ("fp32", "fp16", "bf16")
# cuDNN benchmark mode times every convolution algorithm once per input shape. A plate has
# one field size, so one tile shape (batches are padded to full size on the GPU): tuning
# pays. Images of many sizes would re-tune on each new shape, so tuning stops after this
# many shapes and cuDNN's heuristics pick the kernels from then on.
TUNED_SHAPES = 4


def _to_device(network: Any, device: Any) -> Any:
    """The network moved to the device, channels-last (in place, as ``Module.to`` does)."""
    import torch

    return network.to(device=device, memory_format=torch.channels_last)


class ShapeTuning:
    """Whether cuDNN should time its algorithms for a batch of this shape (the first few)."""

    def __init__(self, limit: int = TUNED_SHAPES) -> None:
        self.limit = limit
        self.tuned: set[tuple[int, ...]] = set()

    def benchmark(self, shape: tuple[int, ...]) -> bool:
        shape = tuple(shape)
        if shape in self.tuned:
            return True
        if len(self.tuned) < self.limit:
            self.tuned.add(shape)
            return True
        return False


class TorchBackend(Backend):
    """Runs the network with PyTorch on ``cpu`` or ``cuda[:N]``.

    On CUDA the backend runs its own copy of the network (moved to the GPU, channels-last),
    so the model's network stays a CPU float32 module for anything else that uses it (a CPU
    runtime, an ONNX export); inference runs under fp16 autocast (or bf16 / fp32 when asked)
    on a stream of its own with pinned, non-blocking copies
    (:class:`~cellseg_hcs.runtime.cuda.CudaTransfers`). On the CPU it runs in float32 (or
    bfloat16 when ``precision="bf16"`` is asked for) with one intra-op thread per usable
    core. Not run on these machines: the CUDA path (no GPU here); it follows PyTorch's
    documented autocast, channels-last and stream APIs, and the tests check with a stand-in
    device move that the model's network is left untouched.
    """

    name = "torch"

    def __init__(
        self,
        network: Any,
        device: str | None = None,
        precision: str | None = None,
        threads: int | None = None,
        batch_size: int = 4,
    ) -> None:
        import torch

        device = device or self.default_device()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda' asked for, but torch sees no CUDA GPU here.")
        if precision is not None and precision not in PRECISIONS:
            raise SettingError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
        self.device = torch.device(device)
        self.batch_size = max(int(batch_size), 1)
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        self.transfers = None
        if self.device.type == "cuda":
            from .cuda import CudaTransfers

            self.network = _to_device(copy.deepcopy(network).eval(), self.device)
            self.transfers = CudaTransfers(self.device)
            self.tuning = ShapeTuning()
            self._lock = threading.Lock()
        else:
            torch.set_num_threads(threads or default_cpu_threads())
            self.network = _on_cpu(network).eval()

    @classmethod
    def load(
        cls,
        model: Any,
        device: str | None = None,
        *,
        tile_size: int = 512,
        batch_size: int = 4,
        **options: Any,
    ) -> TorchBackend:
        return cls(model.network, device=device, batch_size=batch_size, **options)

    @classmethod
    def default_device(cls) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @classmethod
    def availability(cls) -> Availability:
        try:
            import torch
        except (ImportError, OSError) as exc:
            return Availability(False, f"PyTorch cannot be imported ({exc}).")
        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return Availability(True, version=torch.__version__, devices=tuple(devices))

    def _autocast(self):
        import torch

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.transfers is not None:
            return self._predict_cuda(batch)
        import torch

        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            probabilities = torch.sigmoid(self.network(x).float())
        return probabilities.numpy()

    def _predict_cuda(self, batch: np.ndarray) -> np.ndarray:
        import torch

        count = len(batch)
        if count < self.batch_size:  # one shape per tile size: cuDNN tunes it once
            padding = np.zeros((self.batch_size - count, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, padding])
        transfers = self.transfers
        with self._lock, transfers.on_device(), torch.inference_mode():
            torch.backends.cudnn.benchmark = self.tuning.benchmark(batch.shape)
            x = transfers.to_device(batch)
            with transfers.on_stream(), self._autocast():
                x = x.contiguous(memory_format=torch.channels_last)
                probabilities = torch.sigmoid(self.network(x).float())
            return transfers.to_host(probabilities)[:count]

    def describe(self) -> dict[str, str]:
        import torch

        return {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "version": torch.__version__,
        }


def _on_cpu(network: Any) -> Any:
    """The network itself when it is a CPU float32 module (shared, no copy), else a copy."""
    import torch

    parameter = next(network.parameters(), None)
    if parameter is None or (parameter.device.type == "cpu" and parameter.dtype == torch.float32):
        return network
    return copy.deepcopy(network).to(device="cpu", dtype=torch.float32)
