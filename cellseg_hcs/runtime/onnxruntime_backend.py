"""onnxruntime backend: the model's ONNX export on the CPU, or on CUDA with onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import Availability, Backend, default_cpu_threads

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class OnnxRuntimeBackend(Backend):
    """Runs the model's ONNX graph (exported once, cached on disk) with onnxruntime.

    On the CPU: all graph optimizations, one intra-op thread per usable core, no
    inter-op parallelism (a UNet is one chain of convolutions) and no spin-waiting
    between runs, so the post-processing thread beside it gets the cores. ``cuda[:N]``
    needs the onnxruntime-gpu package; not run on these machines (no GPU here).
    """

    name = "onnxruntime"

    def __init__(
        self, onnx_path: str | Path, device: str | None = None, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        device = device or self.default_device()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or default_cpu_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        if device.startswith("cuda"):
            if CUDA_PROVIDER not in ort.get_available_providers():
                raise BackendUnavailable(
                    f"device {device!r} asked for, but this onnxruntime has no CUDA execution "
                    "provider (pip install onnxruntime-gpu)."
                )
            index = int(device.partition(":")[2] or 0)
            providers: list[Any] = [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
        elif device == "cpu":
            providers = [CPU_PROVIDER]
        else:
            raise BackendUnavailable(
                f"onnxruntime cannot run on device {device!r}; use cpu or cuda[:N]."
            )
        self.device = device
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.version = ort.__version__

    @classmethod
    def load(
        cls,
        model: Any,
        device: str | None = None,
        *,
        tile_size: int = 512,
        batch_size: int = 4,
        **options: Any,
    ) -> OnnxRuntimeBackend:
        from .export import cached_onnx

        return cls(cached_onnx(model), device=device, **options)

    @classmethod
    def default_device(cls) -> str:
        import onnxruntime as ort

        return "cuda" if CUDA_PROVIDER in ort.get_available_providers() else "cpu"

    @classmethod
    def availability(cls) -> Availability:
        try:
            import onnxruntime as ort
        except (ImportError, OSError) as exc:
            return Availability(
                False, f"onnxruntime cannot be imported ({exc}); pip install onnxruntime."
            )
        devices = ["cpu"] + (["cuda"] if CUDA_PROVIDER in ort.get_available_providers() else [])
        return Availability(True, version=ort.__version__, devices=tuple(devices))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: batch})[0]

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "device": self.device,
            "precision": "fp32",
            "version": self.version,
            "threads": str(self.threads),
        }
