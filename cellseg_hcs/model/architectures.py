"""Registries: network architectures by name, and the models shipped in the package.

Kept free of torch: an architecture is named by where its class lives, imported only when a
network is built, and says without torch how its input is padded (``multiple``), so a model's
metadata and a compiled export are used without importing PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module, resources
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..weights import BUILTIN_MODELS


@dataclass(frozen=True)
class Architecture:
    """A network class (``module:Class``, imported on first use) and its padding multiple."""

    network: str
    multiple: Callable[..., int]

    def build(self, **options: Any):
        module, _, name = self.network.partition(":")
        return getattr(import_module(module), name)(**options)


def unet_multiple(depth: int = 4, stem: int = 1, **_: Any) -> int:
    """Height and width a UNet pads its input to a multiple of (see ``UNet.multiple``)."""
    return int(stem) * 2 ** (int(depth) - 1)


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture("cellseg_hcs.model.unet:UNet", unet_multiple),
}


def architecture(name: str) -> Architecture:
    """A registered architecture, or one sentence listing the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ModelError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}."
        ) from None


def build_network(name: str, **options: Any):
    """A fresh network of a registered architecture (imports torch)."""
    return architecture(name).build(**options)


def builtin_model_path(name: str) -> Path:
    """Path of a model shipped in the package, by name."""
    try:
        file_name = BUILTIN_MODELS[name][0]
    except KeyError:
        raise ModelError(
            f"{name!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}) nor a model file."
        ) from None
    return Path(str(resources.files("cellseg_hcs.weights").joinpath(file_name)))
