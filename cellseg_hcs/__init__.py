"""cellseg-hcs: deep-learning cell segmentation and per-cell features for HCS plates."""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

__all__ = ["Model", "__version__", "data", "errors", "load_model", "metrics", "run_plate",
           "segment_files", "train"]

# Loaded on first use, so that commands which do not need PyTorch (``info``, ``segment``
# on the cached onnxruntime path) start without importing it (~2 s of CPU).
_LAZY = {"Model": "model", "load_model": "model", "train": "train", "data": None,
         "metrics": None, "errors": None, "segment_files": "segment", "run_plate": "plate"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_LAZY[name] or name}")
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps ``cellseg_hcs.train`` the function when the ``train`` submodule gets imported."""

    def __setattr__(self, name: str, value) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
