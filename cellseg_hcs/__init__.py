"""cellseg-hcs: deep-learning cell segmentation and per-cell features for HCS plates."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = [
    "Model",
    "__version__",
    "data",
    "errors",
    "load_model",
    "metrics",
    "run_plate",
    "segment_files",
    "train",
]

# Loaded on first use, so that commands which do not need PyTorch (``info``, ``segment``
# on the cached onnxruntime path) start without importing it (~2 s of CPU).
# name -> (module, attribute or None for the module itself)
_LAZY = {
    "Model": ("model.model", "Model"),
    "load_model": ("model.model", "load_model"),
    "train": ("training.train", "train"),
    "data": ("training.data", None),
    "metrics": ("training.metrics", None),
    "errors": ("errors", None),
    "segment_files": ("segment", "segment_files"),
    "run_plate": ("plate.run", "run_plate"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
