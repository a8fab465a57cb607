"""A model file already compiled to ONNX, used without PyTorch.

After a model has run once on onnxruntime, its ONNX export, metadata and the file's
SHA-256 are remembered in the cache folder. The next ``cellseg-hcs segment`` on the same,
unchanged file then runs onnxruntime directly and never imports PyTorch (about 2 s of
CPU at start-up, often more than the network's own time on a few dozen fields). Any
doubt (file changed, export missing, a GPU present, a different backend measured
fastest) falls back to loading the model normally.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..field.normalize import prepare_field
from ..field.postprocess import PostprocessSettings, maps_to_labels
from ..weights import is_model_file

INDEX = "compiled-models.json"


@dataclass
class CompiledInfo:
    """The parts of a model's metadata that inference needs."""

    network: dict[str, Any]
    outputs: tuple[str, ...]
    normalize: dict[str, float]
    postprocess: dict[str, Any]
    object_name: str = "Nuclei"
    working_diameter: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.network.get("in_channels", 1))


@dataclass
class CompiledNetwork:
    """Stands in for the torch network where only its input multiple is asked for."""

    multiple: int


class CompiledModel:
    """A model file's ONNX export and metadata: prepares fields and makes labels like
    :class:`~cellseg_hcs.model.model.Model`, predicts through onnxruntime only."""

    def __init__(self, source: str, model_hash: str, info: CompiledInfo, multiple: int) -> None:
        self.source = source
        self.hash = model_hash
        self.info = info
        self.network = CompiledNetwork(multiple)
        self._runtime = None

    def prepare(
        self,
        image: np.ndarray,
        channel: int | str | None = None,
        channel_names: list[str] | None = None,
    ) -> np.ndarray:
        """Normalized float32 CYX input, exactly as :meth:`Model.prepare` makes it."""
        return prepare_field(
            image, self.info.in_channels, self.info.normalize, channel, channel_names
        )

    def labels_from_maps(
        self, maps: np.ndarray, image: np.ndarray | None = None, **settings: Any
    ) -> np.ndarray:
        merged = {**self.info.postprocess, **settings}
        return maps_to_labels(maps[0], maps[1], PostprocessSettings(**merged), image=image)

    def runtime(self, backend: str = "onnxruntime", device: str | None = None, **options: Any):
        """The onnxruntime CPU runtime for this model (made once; ``backend`` is ignored:
        :func:`compiled_model` only hands out a compiled model where onnxruntime runs)."""
        from .registry import Runtime

        if self._runtime is None:
            self._runtime = Runtime(self, "onnxruntime", "cpu", **options)
            if backend == "auto":
                self._runtime.reason = (
                    "no NVIDIA GPU here; onnxruntime measured fastest on "
                    "this CPU for this model (cached measurement)"
                )
        return self._runtime


def _index_path() -> Path:
    from .export import cache_dir

    return cache_dir() / "onnx" / INDEX


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_index() -> dict:
    try:
        return json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}


def remember_compiled(spec: str | Path, model: Any, onnx_path: Path) -> None:
    """Note that ``spec`` (a built-in name or a file) is ``model``, compiled at ``onnx_path``."""
    from dataclasses import asdict

    if not model.source or not Path(model.source).is_file():
        return
    index = _read_index()
    index[_index_key(spec)] = {
        "path": str(Path(model.source).resolve()),
        "sha256": _file_digest(Path(model.source)),
        "model_hash": model.hash,
        "onnx": str(onnx_path),
        "multiple": int(getattr(model.network, "multiple", 1)),
        "info": asdict(model.info),
    }
    path = _index_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index, indent=1, default=str))
        tmp.replace(path)
    except OSError:  # a read-only cache only costs the fast path
        pass


def _index_key(spec: str | Path) -> str:
    """A built-in model by its name; a model file by its absolute path, so that the same
    relative path typed in two folders never names one model for the other."""
    return str(Path(spec).resolve()) if is_model_file(spec) else str(spec)


def no_cuda_gpu_here() -> bool:
    """True when this machine certainly has no NVIDIA GPU (no device nodes), without torch."""
    return os.name == "posix" and not glob.glob("/dev/nvidia[0-9]*")


def compiled_model(
    spec: str | Path, backend: str = "auto", device: str | None = None
) -> CompiledModel | None:
    """The compiled model for ``spec`` when it can run without PyTorch, else None.

    That is when onnxruntime is what would run anyway: asked for on the CPU, or ``auto``
    on a machine with no NVIDIA GPU where onnxruntime was measured fastest for this model.
    """
    if backend not in ("auto", "onnxruntime") or device not in (None, "cpu"):
        return None
    entry = _read_index().get(_index_key(spec))
    if not entry or not Path(entry["onnx"]).is_file() or not Path(entry["path"]).is_file():
        return None
    if is_model_file(spec) and Path(entry["path"]) != Path(spec).resolve():
        return None
    if _file_digest(Path(entry["path"])) != entry["sha256"]:
        return None
    raw = dict(entry["info"])
    info = CompiledInfo(
        network=raw.pop("network", {}),
        outputs=tuple(raw.pop("outputs")),
        normalize=raw.pop("normalize"),
        postprocess=raw.pop("postprocess"),
        object_name=raw.pop("object_name", "Nuclei"),
        working_diameter=float(raw.pop("working_diameter", 30.0)),
        extra=raw,
    )
    model = CompiledModel(entry["path"], entry["model_hash"], info, entry["multiple"])
    if backend == "onnxruntime":
        return model
    if not no_cuda_gpu_here():
        return None
    from .registry import AUTO_CPU_CANDIDATES, cached_cpu_speeds

    speeds = cached_cpu_speeds(model, AUTO_CPU_CANDIDATES)
    if not speeds or max(speeds, key=speeds.get) != "onnxruntime":
        return None
    return model
