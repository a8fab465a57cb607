"""The model a user loads: a network, how to feed it, and how to turn its maps into labels.

A model file is one safetensors file: the weights, plus JSON metadata under the key
``cellseg_hcs`` with the architecture, input channels, normalization, post-processing
settings, training data and metrics, and the package version that wrote it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import ModelError
from ..field.normalize import prepare_field
from ..field.postprocess import PostprocessSettings, maps_to_labels
from ..weights import is_model_file
from .architectures import build_network, builtin_model_path

METADATA_KEY = "cellseg_hcs"
OUTPUTS = ("foreground", "distance")


@dataclass
class ModelInfo:
    """Everything besides the weights that is needed to use, trust and reproduce a model."""

    architecture: str = "unet"
    network: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = OUTPUTS
    normalize: dict[str, float] = field(default_factory=lambda: {"low": 1.0, "high": 99.8})
    postprocess: dict[str, Any] = field(default_factory=lambda: asdict(PostprocessSettings()))
    object_name: str = "Nuclei"
    working_diameter: float = 30.0
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    package_version: str = __version__

    @property
    def in_channels(self) -> int:
        return int(self.network.get("in_channels", 1))


class Model:
    """A trained segmentation model.

    Examples
    --------
    >>> import cellseg_hcs as cs
    >>> model = cs.load_model("nuclei")  # doctest: +SKIP
    >>> labels = model.segment(image)  # doctest: +SKIP
    """

    def __init__(self, network: torch.nn.Module, info: ModelInfo, source: str = "") -> None:
        self.network = network.eval()
        self.info = info
        self.source = source
        self._runtimes: dict[tuple, Any] = {}
        self._runtime = None  # the one used last

    # ------------------------------------------------------------ identity
    @property
    def hash(self) -> str:
        """SHA-256 of the weights and metadata (first 16 hex digits): names a model exactly."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.network.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(json.dumps(asdict(self.info), sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    @property
    def postprocess_settings(self) -> PostprocessSettings:
        return PostprocessSettings(**self.info.postprocess)

    # ------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the model to one safetensors file (atomically)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        metadata = {METADATA_KEY: json.dumps(asdict(self.info), default=_jsonable)}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(state, str(tmp), metadata=metadata)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read a model file written by :meth:`save`."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such model file.")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"{path}: not a cellseg-hcs model file ({exc}).") from exc
        if METADATA_KEY not in metadata:
            raise ModelError(f"{path}: a safetensors file, but not a cellseg-hcs model.")
        raw = json.loads(metadata[METADATA_KEY])
        raw["outputs"] = tuple(raw.get("outputs", OUTPUTS))
        unknown = sorted(set(raw) - {f.name for f in fields(ModelInfo)})
        if unknown:
            raise ModelError(
                f"{path}: written by a newer cellseg-hcs (it stores "
                f"{', '.join(unknown)}); upgrade cellseg-hcs to read it."
            )
        info = ModelInfo(**raw)
        network = build_network(info.architecture, **info.network)
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{path}: weights do not fit the stored architecture.") from exc
        return cls(network, info, source=str(path))

    # ------------------------------------------------------------ inference
    def prepare(
        self,
        image: np.ndarray,
        channel: int | str | None = None,
        channel_names: list[str] | None = None,
    ) -> np.ndarray:
        """Normalized float32 CYX input for the network from a raw image."""
        return prepare_field(
            image, self.info.in_channels, self.info.normalize, channel, channel_names
        )

    def runtime(self, backend: str = "auto", device: str | None = None, **options):
        """The inference runtime (backend + tiling) for this model and these options, made
        once and kept: requests that alternate options (a server's clients) reuse theirs."""
        from ..runtime import Runtime

        wanted = (backend, device, tuple(sorted(options.items())))
        if wanted not in self._runtimes:
            self._runtimes[wanted] = Runtime(self, backend=backend, device=device, **options)
        self._runtime = self._runtimes[wanted]
        return self._runtime

    def forget_runtimes(self) -> None:
        """Drop the kept runtimes (after the weights change, as in training)."""
        self._runtimes.clear()
        self._runtime = None

    def predict_maps(
        self,
        image: np.ndarray,
        channel: int | str | None = None,
        *,
        channel_names: list[str] | None = None,
        backend: str = "auto",
        device: str | None = None,
        diameter: float | None = None,
    ) -> np.ndarray:
        """Probability maps (``len(outputs)``, H, W): foreground, distance, for one image.

        With ``diameter`` (the objects' typical diameter in pixels), the network runs on the
        image resampled so the objects have the model's working diameter; the maps come back
        at the image's size (see :mod:`cellseg_hcs.field.scale`).
        """
        from ..field.scale import predict_at_scale

        x = self.prepare(image, channel, channel_names)
        return predict_at_scale(self.runtime(backend, device), x, self.scale_for(diameter))

    def scale_for(self, diameter: float | None) -> float:
        """How much to resample an image whose objects are ``diameter`` pixels across."""
        from ..field.scale import scale_for

        return scale_for(diameter, self.info.working_diameter)

    def labels_from_maps(
        self, maps: np.ndarray, image: np.ndarray | None = None, **settings: Any
    ) -> np.ndarray:
        """Instance labels from predicted maps, with the model's post-processing settings.

        ``image``: the prepared input the maps came from (:meth:`prepare`, at the maps'
        size); post-processing that joins alike fragments (``merge_height``, as the shipped
        ``nuclei`` does) reads its intensities and needs it.
        """
        merged = {**self.info.postprocess, **settings}
        return maps_to_labels(maps[0], maps[1], PostprocessSettings(**merged), image=image)

    def segment(
        self,
        image: np.ndarray,
        channel: int | str | None = None,
        *,
        channel_names: list[str] | None = None,
        backend: str = "auto",
        device: str | None = None,
        diameter: float | str | None = "auto",
        **settings: Any,
    ) -> np.ndarray:
        """Instance labels (uint16, or uint32 beyond 65535 objects; 0 = background).

        ``diameter``: the objects' typical diameter in pixels, when far from the model's
        ``working_diameter`` (very small or very large nuclei), or to trade a little accuracy
        for speed on large ones; ``"auto"`` (the default) measures it from a first pass and
        runs the network again at the right scale only when it is far off; None keeps the
        image's own scale. ``settings`` override the post-processing thresholds.
        """
        from ..field.scale import parse_diameter, segment_field

        prepared = self.prepare(image, channel, channel_names)
        labels, _, _ = segment_field(
            self, self.runtime(backend, device), prepared, parse_diameter(diameter), **settings
        )
        return labels

    def __repr__(self) -> str:
        return f"Model({self.info.architecture}, {self.info.network}, source={self.source!r})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in model metadata")


def load_model(model: str | Path = "nuclei") -> Model:
    """A built-in model by name (``"nuclei"``) or a model file by path.

    A built-in name wins over a file or folder of that name in the working directory (an
    output folder called ``nuclei`` must not hide the default model); a model file of such a
    name can be given as ``./nuclei``.
    """
    if is_model_file(model):
        return Model.load(Path(model))
    builtin = builtin_model_path(str(model))
    if not builtin.is_file():
        raise ModelError(f"built-in model {model!r} is missing from this installation.")
    return Model.load(builtin)
