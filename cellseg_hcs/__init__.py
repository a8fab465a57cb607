"""cellseg-hcs: deep-learning cell segmentation and per-cell features for HCS plates."""

__version__ = "0.1.0"

from . import data, metrics  # noqa: E402
from .model import Model, load_model  # noqa: E402
from .train import train  # noqa: E402

__all__ = ["Model", "__version__", "data", "load_model", "metrics", "train"]
