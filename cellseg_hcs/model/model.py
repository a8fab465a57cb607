"""The model a user loads: what it is (read without torch) and its network (built on demand).

A model file is one safetensors file: the weights, plus JSON metadata under the key
``cellseg_hcs`` with the architecture, input channels, normalization, post-processing
settings, training data and metrics, and the package version that wrote it. Loading a file
reads its metadata and weights as plain arrays; PyTorch is imported only when something asks
for the network (the torch backend, an ONNX export, training), so a model whose ONNX export
is cached runs on onnxruntime without importing PyTorch at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ModelError, SettingError
from ..field.classes import object_foreground
from ..field.normalize import prepare_field
from ..field.postprocess import PostprocessSettings, maps_to_labels
from ..io.atomic import jsonable, write_atomic_bytes
from ..weights import is_model_file
from .architectures import architecture, builtin_model_path

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
    #: Class names of the class head (the last ``len(classes)`` outputs); () without one.
    classes: tuple[str, ...] = ()
    #: Classes decoded as an object set of their own (class name -> object set name, e.g.
    #: ``{"micronucleus": "Micronuclei"}``); the others are ``object_name``'s objects.
    class_objects: dict[str, str] = field(default_factory=dict)
    #: Post-processing of the other object sets, by name (see field/micronuclei.py).
    object_postprocess: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Test-time flips the model runs with unless told otherwise (runtime/flips.py): its
    #: maps averaged over this many flips and rotations of each tile.
    flips: int = 1

    @property
    def in_channels(self) -> int:
        return int(self.network.get("in_channels", 1))


#: Fields added after models were shipped: stored only when not at their default, so files
#: written before them keep their bytes and their hash.
OPTIONAL_FIELDS = ("classes", "class_objects", "object_postprocess", "flips")


def info_dict(info: ModelInfo) -> dict[str, Any]:
    """The model information as stored and hashed (optional fields at their default left out)."""
    stored = asdict(info)
    defaults = ModelInfo()
    for name in OPTIONAL_FIELDS:
        if stored[name] == asdict(defaults)[name]:
            del stored[name]
    return stored


class Model:
    """A trained segmentation model: its metadata (``info``), weights and network.

    ``network`` is a torch module, or None for a model read from a file: it is then built
    from the file's weights the first time it is asked for.

    Examples
    --------
    >>> import cellseg_hcs as cs
    >>> model = cs.load_model("nuclei")
    >>> model.info.object_name, model.multiple
    ('Nuclei', 32)
    >>> labels = model.segment(image)  # doctest: +SKIP
    """

    def __init__(
        self,
        network: Any = None,
        info: ModelInfo | None = None,
        source: str = "",
        *,
        weights: dict[str, np.ndarray] | None = None,
    ) -> None:
        if network is None and weights is None:
            raise ModelError("a model needs its network or its weights.")
        self._network = network.eval() if network is not None else None
        self._weights = weights
        self._weights_hash = None  # the digest of the file's weights, once
        self.info = info if info is not None else ModelInfo()
        self.source = source
        self._runtimes: dict[tuple, Any] = {}
        self._runtime = None  # the one used last

    # ------------------------------------------------------------ network and identity
    @property
    def network(self):
        """The torch network (built from the weights, importing torch, on first use)."""
        if self._network is None:
            import torch

            network = architecture(self.info.architecture).build(**self.info.network)
            state = {
                name: torch.from_numpy(np.array(array)) for name, array in self._weights.items()
            }
            try:
                network.load_state_dict(state)
            except RuntimeError as exc:
                raise ModelError(
                    f"{self.source or 'the model'}: weights do not fit the stored architecture."
                ) from exc
            self._network = network.eval()
        return self._network

    @property
    def multiple(self) -> int:
        """Height and width the network pads its input to a multiple of (known without torch)."""
        if self._network is not None:
            return int(getattr(self._network, "multiple", 1))
        return architecture(self.info.architecture).multiple(**self.info.network)

    @property
    def hash(self) -> str:
        """SHA-256 of the weights and metadata (first 16 hex digits): names a model exactly."""
        if self._network is None:  # weights as read from the file: hashed once, without torch
            if self._weights_hash is None:
                self._weights_hash = _weights_digest(self._weights.items())
            digest = self._weights_hash.copy()
        else:  # a live network may have been trained since: hashed as it is now
            digest = _weights_digest(
                (name, tensor.detach().cpu().contiguous().numpy())
                for name, tensor in self.network.state_dict().items()
            )
        digest.update(json.dumps(info_dict(self.info), sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    @property
    def postprocess_settings(self) -> PostprocessSettings:
        return PostprocessSettings(**self.info.postprocess)

    # ------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the model to one safetensors file (atomically, readable by all: 0644)."""
        from safetensors.numpy import save

        metadata = {METADATA_KEY: json.dumps(info_dict(self.info), default=jsonable)}
        return write_atomic_bytes(Path(path), save(self.state_arrays(), metadata=metadata))

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, by parameter name."""
        if self._network is None:
            return dict(self._weights)
        return {
            name: tensor.detach().cpu().contiguous().numpy()
            for name, tensor in self._network.state_dict().items()
        }

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read a model file written by :meth:`save` (metadata and weights; no torch)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such model file.")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                weights = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            raise ModelError(f"{path}: not a cellseg-hcs model file ({exc}).") from exc
        if METADATA_KEY not in metadata:
            raise ModelError(f"{path}: a safetensors file, but not a cellseg-hcs model.")
        raw = json.loads(metadata[METADATA_KEY])
        raw["outputs"] = tuple(raw.get("outputs", OUTPUTS))
        if "classes" in raw:
            raw["classes"] = tuple(raw["classes"])
        unknown = sorted(set(raw) - {f.name for f in fields(ModelInfo)})
        if unknown:
            raise ModelError(
                f"{path}: written by a newer cellseg-hcs (it stores "
                f"{', '.join(unknown)}); upgrade cellseg-hcs to read it."
            )
        info = ModelInfo(**raw)
        architecture(info.architecture)  # an unknown one is refused now, not at first use
        _check_scores(info, path)
        return cls(None, info, source=str(path), weights=weights)

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
        once and kept: requests that alternate options (a server's clients) reuse theirs.
        Without ``flips``, the model's own (:attr:`ModelInfo.flips`)."""
        from ..runtime import Runtime

        options["flips"] = self.flips_for(options.get("flips"))
        if options["flips"] == 1:  # one runtime for the callers that name none and for 1
            del options["flips"]
        wanted = (backend, device, tuple(sorted(options.items())))
        if wanted not in self._runtimes:
            self._runtimes[wanted] = Runtime(self, backend=backend, device=device, **options)
        self._runtime = self._runtimes[wanted]
        return self._runtime

    def flips_for(self, asked: int | None) -> int:
        """The test-time flips a run uses: those asked for, else the model's own."""
        return self.info.flips if asked is None else asked

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
        foreground = object_foreground(maps, self.info)
        return maps_to_labels(foreground, maps[1], PostprocessSettings(**merged), image=image)

    def pipeline(
        self,
        settings,
        runtime: Any = None,
        object_name: str | None = None,
        measure_threads: int = 1,
    ):
        """The field recipe with this model for these settings (a
        :class:`~cellseg_hcs.field.pipeline.FieldPipeline`), with the cell model loaded when
        the settings grow cells with one; ``measure_threads`` measure a field's groups at
        once."""
        from ..field.pipeline import FieldPipeline

        cells = settings.cells
        cell_model = (
            load_model(cells.model) if cells is not None and cells.method == "model" else None
        )
        return FieldPipeline(
            settings,
            self,
            runtime=runtime,
            object_name=object_name,
            cell_model=cell_model,
            measure_threads=measure_threads,
        )

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
        """The model's own objects as instance labels (uint16, or uint32 beyond 65535
        objects; 0 = background).

        ``diameter``: the objects' typical diameter in pixels, when far from the model's
        ``working_diameter`` (very small or very large nuclei), or to trade a little accuracy
        for speed on large ones; ``"auto"`` (the default) measures it from a first pass and
        runs the network again at the right scale only when it is far off; None keeps the
        image's own scale. ``settings``: any other :class:`~cellseg_hcs.settings.FieldSettings`
        field (``flips=1``, ``tile_size=512``, ``precision="fp16"``...) or post-processing
        thresholds (``min_score=0.8``).

        A model with more object sets (``micronuclei``) gives here its nuclei only; every
        set, and each micronucleus' parent, come from the field recipe,
        :class:`cellseg_hcs.field.pipeline.FieldPipeline`:

        >>> result = model.pipeline(FieldSettings()).run(image)  # doctest: +SKIP
        >>> result.objects["Micronuclei"], result.parents[("Micronuclei", "Nuclei")]
        ... # doctest: +SKIP
        """
        from dataclasses import fields

        from ..settings import FieldSettings

        known = {f.name for f in fields(FieldSettings)} - {"postprocess"}
        options = {name: settings.pop(name) for name in list(settings) if name in known}
        field_settings = FieldSettings(
            channel=() if channel is None else channel,
            backend=backend,
            device=device,
            diameter=diameter,
            postprocess=settings,
            **options,
        )
        return self.pipeline(field_settings).run(image, channel_names).labels

    def __repr__(self) -> str:
        return f"Model({self.info.architecture}, {self.info.network}, source={self.source!r})"


def _weights_digest(arrays):
    """A SHA-256 digest fed with named arrays, in name order (more may be fed after)."""
    digest = hashlib.sha256()
    for name, array in sorted(arrays, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest


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


def _check_scores(info: ModelInfo, path: Path) -> None:
    """A learned object score stored with a set's settings is read now, not at the first
    field: a malformed one is refused with the file's name."""
    scored = {k: v["score"] for k, v in info.object_postprocess.items() if v.get("score")}
    if not scored:
        return
    from ..field.object_score import ObjectScore

    for name, raw in scored.items():
        try:
            ObjectScore.from_dict(raw)
        except SettingError as exc:
            raise ModelError(f"{path}: object set {name!r}: {exc}") from exc
