"""onnxruntime backend: the model's ONNX export on the CPU, or on CUDA with onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailable
from .base import Availability, Backend, default_cpu_threads

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# Both distributions install the one ``onnxruntime`` folder: with both, whichever was
# installed last owns the files, and uninstalling either breaks the other.
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")
BOTH_INSTALLED = (
    "onnxruntime and onnxruntime-gpu are both installed and overwrite each other's files; "
    "keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu "
    "(GPU) or onnxruntime (CPU only)."
)


def installed_distributions() -> tuple[str, ...]:
    """Which of onnxruntime's distributions are installed (from metadata, no import)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in DISTRIBUTIONS:
        try:
            version(name)
        except PackageNotFoundError:
            continue
        found.append(name)
    return tuple(found)


class OnnxRuntimeBackend(Backend):
    """Runs the model's ONNX graph (exported once, cached on disk) with onnxruntime.

    On the CPU: all graph optimizations, one intra-op thread per usable core, no
    inter-op parallelism (a UNet is one chain of convolutions) and no spin-waiting
    between runs, so the post-processing thread beside it gets the cores. ``cuda[:N]``
    needs the onnxruntime-gpu package (the ``gpu`` extra, in place of ``onnxruntime``): the
    session's providers are checked once it is made, since onnxruntime quietly falls back to
    the CPU when its CUDA provider cannot load (missing CUDA or cuDNN libraries), and cuDNN
    picks convolution algorithms by heuristics instead of timing them again for every new
    tile shape. The CUDA path is not run on these machines (no GPU here); the tests check the
    provider check with a stand-in onnxruntime.
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
                    f"provider ({_gpu_install_hint()})."
                )
            index = int(device.partition(":")[2] or 0)
            cuda_options = {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC"}
            providers: list[Any] = [(CUDA_PROVIDER, cuda_options), CPU_PROVIDER]
        elif device == "cpu":
            providers = [CPU_PROVIDER]
        else:
            raise BackendUnavailable(
                f"onnxruntime cannot run on device {device!r}; use cpu or cuda[:N]."
            )
        self.device = device
        self.threads = options.intra_op_num_threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        active = self.session.get_providers()
        if device.startswith("cuda") and CUDA_PROVIDER not in active:
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__} could not start its CUDA provider on {device} "
                f"and would run on the CPU instead (providers: {', '.join(active)}); check "
                "that the CUDA and cuDNN libraries onnxruntime-gpu needs are installed."
            )
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
        # Runs, but say so: the next upgrade of either distribution breaks the other.
        note = BOTH_INSTALLED if len(installed_distributions()) > 1 else ""
        return Availability(True, note, version=ort.__version__, devices=tuple(devices))

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


def _gpu_install_hint() -> str:
    if len(installed_distributions()) > 1:
        return BOTH_INSTALLED.rstrip(".")
    return "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
