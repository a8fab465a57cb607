"""Network architectures and the registry of named models."""

from .registry import ARCHITECTURES, BUILTIN_MODELS, build_network, builtin_model_path
from .unet import UNet

__all__ = ["ARCHITECTURES", "BUILTIN_MODELS", "UNet", "build_network", "builtin_model_path"]
