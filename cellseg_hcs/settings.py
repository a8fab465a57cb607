"""The settings of one field's segmentation: one typed object, validated once.

:class:`FieldSettings` is what a user sets. It holds the channels
(:mod:`cellseg_hcs.channels`), overrides of the thresholds a model carries in its file
(:class:`PostprocessSettings`) and the cells' settings (:class:`CellSettings`), both in
:mod:`cellseg_hcs.object_settings`; every name is importable from here.

Every face builds the same :class:`FieldSettings`: the CLI from its options (declared from
this class's fields, see :mod:`cellseg_hcs.cli.options`), the Python API from keywords, the
server and the CellProfiler module from a request's JSON (:meth:`FieldSettings.from_mapping`),
and the plate run hands it to every field's tasks. The defaults below are the defaults
everywhere; each bad value is refused with one sentence naming the setting.

Examples
--------
>>> settings = FieldSettings(channel="DNA", diameter=45)
>>> settings.diameter, settings.channel
(45.0, (ChannelChoice(value='DNA', by='name'),))
>>> FieldSettings(tile_size=10)
Traceback (most recent call last):
...
cellseg_hcs.errors.SettingError: tile size 10 must be a whole number of pixels from 32 to 16384.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .channels import ChannelChoice, parse_channels
from .errors import SettingError
from .object_settings import (
    CELL_METHOD_NAMES,
    THRESHOLD_METHOD_NAMES,
    CellSettings,
    PostprocessSettings,
    ThresholdChoice,
)
from .weights import BUILTIN_MODELS

__all__ = [
    "AUTO",
    "CELL_METHOD_NAMES",
    "DEFAULTS",
    "NATIVE",
    "THRESHOLD_METHOD_NAMES",
    "CellSettings",
    "ChannelChoice",
    "FieldSettings",
    "PostprocessSettings",
    "ThresholdChoice",
    "parse_channels",
    "parse_device",
    "parse_diameter",
    "settings_for",
]

AUTO = "auto"
NATIVE = "native"
MAX_DIAMETER = 10000.0
BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16")
DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def parse_diameter(value: float | str | None) -> float | str | None:
    """A diameter as users give it: pixels, ``"auto"``, or ``"native"``/None (no resampling).

    Examples
    --------
    >>> parse_diameter("auto"), parse_diameter("60"), parse_diameter("native")
    ('auto', 60.0, None)
    """
    if value is None or value == NATIVE:
        return None
    if value == AUTO:
        return AUTO
    if isinstance(value, bool):
        value = "a yes/no value"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(
            f"diameter must be a number of pixels, {AUTO!r} or {NATIVE!r}, not {value!r}."
        ) from None
    if not 1.0 <= number <= MAX_DIAMETER:
        raise SettingError(
            f"diameter must be a number of pixels from 1 to {MAX_DIAMETER:g}, not {value}."
        )
    return number


def parse_device(value: str | None) -> str | None:
    """``None``/``"auto"`` (the backend's choice), ``cpu``, ``cuda`` or ``cuda:N``."""
    if value is None or value == AUTO:
        return None
    if not isinstance(value, str) or not DEVICE.fullmatch(value):
        raise SettingError(f"device {value!r} is not one of auto, cpu, cuda, cuda:N.")
    return value


def _setting(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with the help text and CLI spelling its options are declared from."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"help": help, **cli})


@dataclass(frozen=True)
class FieldSettings:
    """How one field of view is segmented: model, channels, scale, tiling, thresholds, runtime.

    Parameters
    ----------
    model:
        A built-in model name (``"nuclei"``) or the path of a ``.safetensors`` model file.
    channel:
        The channel(s) the model reads, by index or name; empty: the field's first channel(s).
    diameter:
        The objects' typical diameter in pixels; ``"auto"`` measures it in a first pass and
        resamples only fields whose objects are far from the model's size (a plate run
        measures it once, on its first fields); None (``"native"``) never resamples.
    tile_size, overlap, batch_size:
        Fields larger than a tile are predicted in tiles overlapping by ``overlap`` pixels,
        ``batch_size`` tiles at a time.
    flips:
        Test-time flips: each tile's maps averaged over this many flips and rotations of it
        (1, 2, 4 or 8; :mod:`cellseg_hcs.runtime.flips`); None: the model's own.
    foreground_threshold, min_size, postprocess:
        Post-processing overrides (``postprocess``: any other by name); None keeps the
        model's own tuned values.
    backend, device, precision:
        Inference backend (``auto``, ``tensorrt``, ``torch``, ``onnxruntime``), device
        (None = the backend's choice, ``cpu``, ``cuda``, ``cuda:N``) and precision (None =
        the backend's choice: fp16 on a GPU with tensor cores, fp32 on the CPU).
    probabilities:
        Also return the foreground probability map.
    """

    model: str = _setting(
        "nuclei",
        f"A built-in model ({', '.join(BUILTIN_MODELS)}; `cellseg-hcs info` describes them) "
        "or a .safetensors model file.",
    )
    channel: tuple[ChannelChoice, ...] = _setting(
        tuple,
        "Channel the model reads: index (0-based) or name; several comma-separated for a "
        "model of several channels (default: the first).",
    )
    diameter: float | str | None = _setting(
        AUTO,
        "Typical object diameter in pixels, when far from the model's own (about 30): the "
        "network then runs on the field resampled to it. 'auto' measures it in a first pass "
        "(a plate: on its first fields) and resamples only when it is far off; 'native' "
        "never resamples.",
        metavar="PIXELS|auto|native",
    )
    tile_size: int = _setting(1024, "Tile size in pixels for large fields.", metavar="PIXELS")
    overlap: int = _setting(64, "Overlap between tiles, in pixels.", metavar="PIXELS")
    batch_size: int = _setting(4, "Tiles run at once (GPU memory vs speed).", metavar="N")
    flips: int | None = _setting(
        None,
        "Average the network's maps over this many flips and rotations of each tile (1, 2, "
        "4 or 8): the network runs that many times (default: the model's own; nuclei 1, "
        "micronuclei 8).",
        metavar="1|2|4|8",
    )
    foreground_threshold: float | None = _setting(
        None, "Object probability threshold (default: the model's own).", metavar="0-1"
    )
    min_size: int | None = _setting(
        None, "Smallest object kept, in pixels (default: the model's own).", metavar="PIXELS"
    )
    postprocess: dict[str, Any] = _setting(
        dict, "Other post-processing overrides, by name (see PostprocessSettings)."
    )
    backend: str = _setting(AUTO, "Inference backend: auto, tensorrt, torch or onnxruntime.")
    device: str | None = _setting(None, "cpu, cuda or cuda:N (default: the backend's).")
    precision: str | None = _setting(
        None, "fp32, fp16 or bf16 (default: fp16 on a GPU, fp32 on the CPU)."
    )
    probabilities: bool = _setting(False, "Also return the foreground probability map.")
    cells: CellSettings | None = _setting(
        None, "Grow each nucleus into its cell on a cell stain, and take the cytoplasm."
    )
    measure_channels: tuple[ChannelChoice, ...] = _setting(
        tuple, "Channels measured in every compartment (default: all)."
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: values are normalized once, here
        if not isinstance(self.model, str) or not self.model.strip():
            raise SettingError("the model must be a built-in model name or a model file path.")
        set_(self, "channel", parse_channels(self.channel))
        set_(self, "diameter", parse_diameter(self.diameter))
        _whole(self.tile_size, "tile size", 32, 16384, " of pixels")
        _whole(self.batch_size, "batch size", 1, 256)
        _whole(self.overlap, "overlap", 0, self.tile_size // 2 - 1, " of pixels")
        if self.flips is not None:  # imported here: the settings (and the CLI) load no numpy
            from .runtime.flips import check_flips

            check_flips(self.flips)
        if self.foreground_threshold is not None:
            threshold = self.foreground_threshold
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                raise SettingError(f"probability threshold {threshold!r} must be a number.")
            if not 0.0 < threshold < 1.0:
                raise SettingError(f"probability threshold {threshold!r} must lie between 0 and 1.")
            set_(self, "foreground_threshold", float(threshold))
        if self.min_size is not None:
            _whole(self.min_size, "minimum size", 0, 10**9, " of pixels")
        if not isinstance(self.postprocess, Mapping):
            raise SettingError(f"postprocess {self.postprocess!r} must map names to values.")
        _check_postprocess(self.postprocess)
        set_(self, "postprocess", dict(self.postprocess))
        if self.backend not in BACKENDS:
            raise SettingError(f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}.")
        set_(self, "device", parse_device(self.device))
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SettingError(
                f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}."
            )
        if not isinstance(self.probabilities, bool):
            raise SettingError(f"probabilities {self.probabilities!r} must be true or false.")
        if isinstance(self.cells, Mapping):
            set_(self, "cells", CellSettings(**self.cells))
        if self.cells is not None and not isinstance(self.cells, CellSettings):
            raise SettingError(f"cells {self.cells!r} must be cell settings or None.")
        if self.cells is not None and self.cells.channel is None:
            raise SettingError("cells need a cell channel (a cytoplasm, membrane or actin stain).")
        set_(self, "measure_channels", parse_channels(self.measure_channels))

    # ------------------------------------------------------------------ building
    @classmethod
    def from_mapping(cls, raw: Any) -> FieldSettings:
        """Settings from a request's JSON object; an unknown key is an error, not ignored."""
        if not isinstance(raw, Mapping):
            raise SettingError("the settings must be a JSON object of names and values.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise SettingError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}."
            )
        return cls(**dict(raw))

    def replace(self, **changes: Any) -> FieldSettings:
        """A copy with some settings changed (validated again)."""
        return type(self).from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (for run.json, requests and logs)."""
        out = asdict(self)
        out["channel"] = [choice.value for choice in self.channel]
        out["measure_channels"] = [choice.value for choice in self.measure_channels]
        if self.cells is not None:
            out["cells"]["channel"] = self.cells.channel.value
            out["cells"]["threshold_bounds"] = list(self.cells.threshold_bounds)
        return out

    # ------------------------------------------------------------------ reading
    @property
    def runtime_options(self) -> dict[str, Any]:
        """Options of :meth:`cellseg_hcs.model.model.Model.runtime`."""
        options: dict[str, Any] = {
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
        }
        if self.precision is not None:
            options["precision"] = self.precision
        if self.flips is not None:  # else the model's own (Model.runtime)
            options["flips"] = self.flips
        return options

    @property
    def postprocess_overrides(self) -> dict[str, Any]:
        """The post-processing values that replace the model's own."""
        overrides = {"foreground_threshold": self.foreground_threshold, "min_size": self.min_size}
        return {**self.postprocess, **{k: v for k, v in overrides.items() if v is not None}}


def settings_for(
    model: Any, settings: FieldSettings | None, options: Mapping[str, Any]
) -> FieldSettings:
    """A face's settings: ``settings`` with ``options`` changed, or made from the options
    and the model (a name, a file, or a loaded model, named by its source)."""
    if settings is None:
        name = model if isinstance(model, str) else getattr(model, "source", "") or str(model)
        return FieldSettings(model=str(name) or "in memory", **options)
    return settings.replace(**options) if options else settings


def _check_postprocess(overrides: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(PostprocessSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SettingError(
            f"unknown post-processing setting(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known))}."
        )


def _whole(value: Any, name: str, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingError(f"{name} {value!r} must be a whole number{unit} from {low} to {high}.")


DEFAULTS = FieldSettings()
"""The defaults, documented once (README, docs and the CellProfiler module quote these)."""
