"""Segmenting one image for another program: the options it may set, and warm models.

The same :class:`Segmenter` runs behind ``cellseg-hcs serve`` and inside the CellProfiler
module when that runs in-process, so both give the labels ``Model.segment`` gives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SettingError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class SegmentOptions:
    """What a caller may choose when segmenting one image.

    Parameters
    ----------
    model:
        Built-in model name (``"nuclei"``) or path of a ``.safetensors`` model file.
    device:
        ``"auto"`` (GPU when there is one), ``"cpu"`` or ``"cuda"``.
    tile_size, batch_size:
        Tiling of large images, and tiles run at once; None keeps the runtime's defaults,
        the ones ``cellseg-hcs segment`` uses.
    foreground_threshold, min_size:
        Post-processing overrides; None keeps the model's own tuned values.
    probabilities:
        Also return the foreground probability map (float32).
    diameter:
        The objects' typical diameter in pixels: the network then runs on the image
        resampled to the model's working diameter (``--diameter`` of the CLI); ``"auto"``
        measures it in a first pass and resamples only when it is far off; None or
        ``"native"`` runs it at the image's own scale.
    """

    model: str = "nuclei"
    device: str = "auto"
    tile_size: int | None = None
    batch_size: int | None = None
    foreground_threshold: float | None = None
    min_size: int | None = None
    probabilities: bool = False
    diameter: float | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise SettingError("the model must be a built-in model name or a model file path.")
        if self.device not in DEVICES:
            raise SettingError(f"device {self.device!r} is not one of {', '.join(DEVICES)}.")
        if self.tile_size is not None and (
            not isinstance(self.tile_size, int) or not 256 <= self.tile_size <= 8192
        ):
            raise SettingError(f"tile size {self.tile_size!r} must be an integer from 256 to 8192.")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 256
        ):
            raise SettingError(f"batch size {self.batch_size!r} must be an integer from 1 to 256.")
        threshold = self.foreground_threshold
        if threshold is not None and (
            not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0
        ):
            raise SettingError(f"probability threshold {threshold!r} must lie between 0 and 1.")
        if self.min_size is not None and (
            not isinstance(self.min_size, int)
            or isinstance(self.min_size, bool)
            or self.min_size < 0
        ):
            raise SettingError(f"minimum size {self.min_size!r} must be a whole number of pixels.")
        if not isinstance(self.probabilities, bool):
            raise SettingError(f"probabilities {self.probabilities!r} must be true or false.")
        if self.diameter not in (None, "auto", "native") and (
            not isinstance(self.diameter, (int, float))
            or isinstance(self.diameter, bool)
            or not 1.0 <= self.diameter <= 10000.0
        ):
            raise SettingError(
                f"diameter {self.diameter!r} must be a number of pixels "
                'from 1 to 10000, "auto" or "native".'
            )

    @classmethod
    def from_dict(cls, raw: Any) -> SegmentOptions:
        """Options from a request's JSON object; unknown keys are an error, not ignored."""
        if not isinstance(raw, dict):
            raise SettingError("the options must be a JSON object.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingError(f"unknown option(s) {', '.join(unknown)}; known: {sorted(known)}.")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise SettingError(f"bad options ({exc}).") from exc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def runtime_options(self) -> dict[str, int]:
        """Tiling options for ``Model.runtime``; empty for the defaults."""
        options = {"tile_size": self.tile_size, "batch_size": self.batch_size}
        return {key: value for key, value in options.items() if value is not None}

    @property
    def postprocess_overrides(self) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        if self.foreground_threshold is not None:
            overrides["foreground_threshold"] = float(self.foreground_threshold)
        if self.min_size is not None:
            overrides["min_size"] = int(self.min_size)
        return overrides


class Segmenter:
    """Models loaded once and kept warm; safe to call from many threads.

    Predictions run one at a time (one lock), so several callers share one GPU without
    each holding a copy of the model in its memory.

    Examples
    --------
    >>> segmenter = Segmenter()
    >>> out = segmenter.segment(image, SegmentOptions(model="nuclei"))  # doctest: +SKIP
    >>> out["labels"].dtype  # doctest: +SKIP
    dtype('uint16')
    """

    def __init__(self, max_models: int = 2) -> None:
        self.max_models = max_models
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def model(self, name: str):
        """The loaded model for a name or file, loading it on first use."""
        from ..model.model import load_model

        key = _model_key(name)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_model(name)
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return model

    def segment(self, image: np.ndarray, options: SegmentOptions) -> dict[str, np.ndarray]:
        """``{"labels": uint16/uint32 labels}``, plus ``"probabilities"`` when asked for.

        ``image`` is a 2-D plane (any dtype: it is percentile-normalized, so CellProfiler's
        0-1 floats and the raw integers give the same labels), or CYX/YXC for a model that
        takes several channels.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or min(image.shape) < 1:
            raise SettingError(f"expected a 2-D image (or 2-D with channels), got {image.shape}.")
        from ..field.scale import parse_diameter, segment_field

        model = self.model(options.model)
        device = None if options.device == "auto" else options.device
        x = model.prepare(image)  # CPU work of this request alone: outside the shared lock
        with self._lock:
            runtime = model.runtime("auto", device, **options.runtime_options)
        labels, _, maps = segment_field(
            model,
            _Locked(runtime, self._lock),
            x,
            parse_diameter(options.diameter),
            **options.postprocess_overrides,
        )
        result = {"labels": labels}
        if options.probabilities:
            result["probabilities"] = maps[0].astype(np.float32)
        return result

    def describe(self, name: str) -> dict[str, Any]:
        """Model source, hash and object name, for a client's log."""
        from .. import __version__

        model = self.model(name)
        return {
            "model": name,
            "source": model.source,
            "hash": model.hash,
            "object_name": model.info.object_name,
            "version": __version__,
        }


class _Locked:
    """A runtime whose network runs one request at a time; resampling and post-processing
    around it (:func:`~cellseg_hcs.field.scale.segment_field`) run outside the lock."""

    def __init__(self, runtime, lock) -> None:
        self.runtime = runtime
        self.lock = lock

    def predict(self, field: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.runtime.predict(field)


def _model_key(name: str) -> tuple:
    from ..weights import is_model_file

    if is_model_file(name):
        path = Path(name).expanduser().resolve()
        mtime = path.stat().st_mtime_ns if path.exists() else 0
        return ("file", str(path), mtime)
    return ("builtin", name)
