"""PyTorch backend: CPU or CUDA, inference mode, channels-last, autocast where it pays."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import BackendUnavailable
from .base import Availability, Backend


def default_cpu_threads() -> int:
    """Threads for CPU inference: the CPU cores this process may use (affinity-aware)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


class TorchBackend(Backend):
    """Runs the network with PyTorch on ``cpu`` or ``cuda[:N]``.

    On CUDA, inference runs under fp16 autocast (bf16 where supported is not faster for
    convolutions on current GPUs); on CPU it runs in float32, or bfloat16 when
    ``precision="bf16"`` is asked for. Not run on these machines: the CUDA path (no GPU
    here); it follows PyTorch's documented autocast and channels-last APIs.
    """

    name = "torch"

    def __init__(self, network: torch.nn.Module, device: str | None = None,
                 precision: str | None = None, threads: int | None = None) -> None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda' asked for, but torch sees no CUDA GPU here.")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or default_cpu_threads())
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        self.network = network.to(self.device).eval()
        if self.device.type == "cuda":
            self.network = self.network.to(memory_format=torch.channels_last)

    @classmethod
    def availability(cls) -> Availability:
        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return Availability(True, version=torch.__version__, devices=tuple(devices))

    def _autocast(self):
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            probabilities = torch.sigmoid(self.network(x).float())
        return probabilities.cpu().numpy()

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "device": str(self.device), "precision": self.precision,
                "version": torch.__version__}
