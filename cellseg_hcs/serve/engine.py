"""Segmenting one image for another program, with models kept warm.

The same :class:`Segmenter` runs behind ``cellseg-hcs serve`` and inside the CellProfiler
module when that runs in-process. A request's options are a
:class:`~cellseg_hcs.settings.FieldSettings` (from its JSON), and the image goes through the
field recipe (:class:`~cellseg_hcs.field.pipeline.FieldPipeline`), so both give the labels
``Model.segment`` and ``cellseg-hcs segment`` give.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SettingError
from ..settings import FieldSettings


class Segmenter:
    """Models loaded once and kept warm; safe to call from many threads.

    Predictions run one at a time (one lock), so several callers share one GPU without
    each holding a copy of the model in its memory.

    Examples
    --------
    >>> segmenter = Segmenter()
    >>> out = segmenter.segment(image, FieldSettings(model="nuclei"))  # doctest: +SKIP
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

    def segment(self, image: np.ndarray, settings: FieldSettings) -> dict[str, np.ndarray]:
        """``{"labels": uint16/uint32 labels}`` (the model's objects), the other object sets
        the settings make by their lower-case name (``"cells"``, ``"cytoplasm"``), the parent
        of each of their objects among the model's (``"cells_parents"``), and
        ``"probabilities"`` when asked for.

        ``image`` is a 2-D plane (any dtype: it is percentile-normalized, so CellProfiler's
        0-1 floats and the raw integers give the same labels), or CYX/YXC for a model that
        takes several channels.
        """
        from ..field.pipeline import FieldChannels

        image = np.asarray(image)
        if image.ndim not in (2, 3) or min(image.shape) < 1:
            raise SettingError(f"expected a 2-D image (or 2-D with channels), got {image.shape}.")
        model = self.model(settings.model)
        with self._lock:
            runtime = model.runtime(settings.backend, settings.device, **settings.runtime_options)
        # Only the network runs under the shared lock; preparing and post-processing this
        # request's image happen outside it, beside other requests.
        pipeline = model.pipeline(settings, runtime=_Locked(runtime, self._lock))
        result = pipeline.run(FieldChannels.from_array(image, where="the image"))
        out = {"labels": result.labels}
        for name, labels in result.objects.items():
            if name != result.primary:
                out[name.lower()] = labels
        for (child, parent), numbers in result.parents.items():
            if parent == result.primary:  # e.g. "micronuclei_parents": the nucleus of each
                out[f"{child.lower()}_parents"] = np.asarray(numbers, dtype=np.int32)
        if result.maps is not None:
            out["probabilities"] = result.maps[0].astype(np.float32)
        return out

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
    around it (the field recipe's other stages) run outside the lock."""

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
