"""PyTorch backend: CPU or CUDA, inference mode, channels-last, autocast where it pays."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BackendUnavailable, SettingError
from .base import Availability, Backend, default_cpu_threads

PRECISIONS = ("fp32", "fp16", "bf16")


class TorchBackend(Backend):
    """Runs the network with PyTorch on ``cpu`` or ``cuda[:N]``.

    On CUDA, inference runs channels-last under fp16 autocast; on CPU it runs in float32
    (or bfloat16 when ``precision="bf16"`` is asked for) with one intra-op thread per
    usable core. Not run on these machines: the CUDA path (no GPU here); it follows
    PyTorch's documented autocast and channels-last APIs.
    """

    name = "torch"

    def __init__(
        self,
        network: Any,
        device: str | None = None,
        precision: str | None = None,
        threads: int | None = None,
    ) -> None:
        import torch

        device = device or self.default_device()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda' asked for, but torch sees no CUDA GPU here.")
        if precision is not None and precision not in PRECISIONS:
            raise SettingError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or default_cpu_threads())
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        self.network = network.to(self.device).eval()
        if self.device.type == "cuda":
            self.network = self.network.to(memory_format=torch.channels_last)

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
        return cls(model.network, device=device, **options)

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
        import torch

        with torch.inference_mode(), self._autocast():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            probabilities = torch.sigmoid(self.network(x).float())
        return probabilities.cpu().numpy()

    def describe(self) -> dict[str, str]:
        import torch

        return {
            "backend": self.name,
            "device": str(self.device),
            "precision": self.precision,
            "version": torch.__version__,
        }
