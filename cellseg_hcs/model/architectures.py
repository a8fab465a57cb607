"""Registries: network architectures by name, and the models shipped in the package."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from torch import nn

from ..errors import ModelError
from ..weights import BUILTIN_MODELS
from .unet import UNet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"unet": UNet}


def build_network(architecture: str, **options) -> nn.Module:
    """A fresh network of a registered architecture."""
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise ModelError(
            f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}."
        ) from None
    return factory(**options)


def builtin_model_path(name: str) -> Path:
    """Path of a model shipped in the package, by name."""
    try:
        file_name = BUILTIN_MODELS[name][0]
    except KeyError:
        raise ModelError(
            f"{name!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}) nor a model file."
        ) from None
    return Path(str(resources.files("cellseg_hcs.weights").joinpath(file_name)))
