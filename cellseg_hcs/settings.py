"""The settings of one field's segmentation: one typed object, validated once.

:class:`FieldSettings` is what a user sets; :class:`PostprocessSettings` the thresholds a
model carries in its file (tuned on validation images), which ``FieldSettings`` may override.

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import SettingError

AUTO = "auto"
NATIVE = "native"
MAX_DIAMETER = 10000.0
BACKENDS = ("auto", "tensorrt", "torch", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "bf16")
DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
CHANNEL_MODES = ("index", "name", "auto")


@dataclass(frozen=True)
class ChannelChoice:
    """One channel of a field: by index (0-based), by name, or ``auto``.

    ``auto`` is how a user's text is read: a channel of that exact name if the field has one,
    otherwise digits are an index (``--channel 0``). Give ``by`` to say which you mean.

    Examples
    --------
    >>> ChannelChoice.parse("1").resolve(["DNA", "Actin"])
    1
    >>> ChannelChoice.parse("Actin").resolve(["DNA", "Actin"])
    1
    >>> ChannelChoice(0, by="index").resolve(["DNA"], where="image a.tif")
    0
    """

    value: int | str
    by: str = "auto"

    def __post_init__(self) -> None:
        if self.by not in CHANNEL_MODES:
            raise SettingError(
                f"channel mode {self.by!r} is not one of {', '.join(CHANNEL_MODES)}."
            )
        if isinstance(self.value, bool) or not isinstance(self.value, (int, str)):
            raise SettingError(f"channel {self.value!r} must be an index or a name.")
        if self.by == "index" and not _is_index(self.value):
            raise SettingError(f"channel index {self.value!r} must be a whole number from 0.")
        if isinstance(self.value, str) and not self.value.strip():
            raise SettingError("a channel name cannot be empty.")

    @classmethod
    def parse(cls, value: ChannelChoice | int | str) -> ChannelChoice:
        """A channel as users give it: an int is an index, a text is read ``auto``."""
        if isinstance(value, ChannelChoice):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value, "index")
        if isinstance(value, str) and not value.strip().isdigit():
            return cls(value.strip(), "name")
        return cls(value.strip() if isinstance(value, str) else value, "auto")

    def resolve(self, names: Sequence[str], where: str = "the image") -> int:
        """The index of this channel among ``names``, or one sentence saying why not."""
        names = list(names)
        if self.by != "index" and str(self.value) in names:
            return names.index(str(self.value))
        if self.by != "name" and _is_index(self.value):
            index = int(self.value)
            if index < len(names):
                return index
            raise SettingError(
                f"channel {index} asked for, but {where} has {len(names)} channel(s) "
                f"({', '.join(names)})."
            )
        raise SettingError(
            f"channel {self.value!r} is not in {where}; its channels are {', '.join(names)}."
        )


def _is_index(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.strip().isdigit()


def parse_channels(value: Any) -> tuple[ChannelChoice, ...]:
    """A channel option as users give it (None, one channel, or several, also ``"A,B"``)."""
    if value is None or value == "" or value == ():
        return ()
    if isinstance(value, (ChannelChoice, int)) and not isinstance(value, bool):
        return (ChannelChoice.parse(value),)
    if isinstance(value, str):
        return tuple(ChannelChoice.parse(part) for part in value.split(",") if part.strip())
    if isinstance(value, Mapping) and set(value) == {"value", "by"}:  # as to_dict wrote it
        return (ChannelChoice(value["value"], value["by"]),)
    if isinstance(value, Sequence):
        return tuple(choice for item in value for choice in parse_channels(item))
    raise SettingError(f"channel {value!r} must be an index, a name, or a list of them.")


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


@dataclass(frozen=True)
class PostprocessSettings:
    """Thresholds that turn probability maps into labels.

    ``foreground_threshold`` cuts the foreground probability. ``seeds`` says how the
    second map (1 in an object's centre, falling towards its edge) gives one seed per object:
    ``"threshold"`` takes the connected regions above ``seed_threshold``; ``"peaks"`` takes
    the peaks that rise at least ``peak_height`` above the lowest pass to a higher peak
    (the h-maxima), which splits touching nuclei whose maps merge above any one threshold
    and keeps irregular nuclei whole. Objects smaller than ``min_size`` pixels are dropped,
    and so are objects smaller than ``min_size_fraction`` of the field's median object
    area. The second filter has no unit, so it holds at every magnification: it removes
    micronuclei and debris, which are a few percent of a nucleus' area, wherever the
    nuclei are 10 or 100 pixels across. Objects whose mean foreground probability is under
    ``min_score`` are dropped too: the network's own doubt, which spares small nuclei that
    a size filter would take.

    ``merge_height`` (0 = off) joins fragments again: two touching objects that peaks of
    height ``merge_height`` would have kept as one object are merged when their mean
    intensities in the image differ by less than ``merge_contrast`` of their mean. The
    lobes of one nucleus have the same brightness; two touching nuclei often do not. The
    joining is transitive (A like B and B like C join all three). It needs the image
    (``image=`` of :func:`maps_to_labels`); with ``seeds="threshold"`` it does nothing.
    """

    foreground_threshold: float = 0.5
    seed_threshold: float = 0.5
    min_size: int = 16
    fill_holes: bool = True
    min_size_fraction: float = 0.0
    seeds: str = "threshold"
    peak_height: float = 0.3
    min_score: float = 0.0
    merge_height: float = 0.0
    merge_contrast: float = 0.05


# The names of the cell methods and thresholds (their registries: field/cells.py CELL_METHODS,
# field/threshold.py THRESHOLD_METHODS; a test keeps them equal).
CELL_METHOD_NAMES = ("propagation", "watershed", "distance", "model")
THRESHOLD_METHOD_NAMES = ("minimum_cross_entropy", "otsu", "manual")
MIDDLE_CLASSES = ("foreground", "background")


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold settings :func:`foreground` reads (CellProfiler's, by its names).

    ``method``: ``minimum_cross_entropy`` (Li; CellProfiler's default), ``otsu`` or
    ``manual``; ``otsu_classes`` 2 or 3, and with three classes ``middle_class`` says where
    the middle class goes (``foreground`` or ``background``); ``smoothing_scale`` (0: none);
    ``correction_factor`` multiplies the threshold, which is then held within ``bounds``;
    ``manual`` is the threshold of the ``manual`` method; ``log_transform`` thresholds the
    log of the intensities (Li and Otsu only).
    """

    method: str = "minimum_cross_entropy"
    otsu_classes: int = 2
    middle_class: str = "foreground"
    smoothing_scale: float = 0.0
    correction_factor: float = 1.0
    bounds: tuple[float, float] = (0.0, 1.0)
    manual: float = 0.0
    log_transform: bool = False


@dataclass(frozen=True)
class CellSettings:
    """How cells are grown from nuclei, with CellProfiler 4.2.8's defaults and names.

    Parameters
    ----------
    channel:
        The cell stain the cells grow on (a cytoplasm, membrane or actin channel), by index
        or name as :class:`ChannelChoice`; it must not be the nuclei's channel.
    method:
        ``propagation`` (default), ``watershed`` (CellProfiler's Watershed - Image),
        ``distance`` (Distance - N) or ``model`` (a trained cell model's maps).
    regularization_factor:
        Propagation's weight of distance in the plane against intensity differences
        (CellProfiler's "Regularization factor", 0.05): 0 follows the image only, large
        values approach plain distance.
    distance:
        Pixels each nucleus grows by with ``distance`` ("Number of pixels by which to
        expand the primary objects", 10).
    threshold_method:
        ``minimum_cross_entropy`` (CellProfiler's default, also called Li), ``otsu`` or
        ``manual``; the threshold is global, computed on the whole field.
    otsu_classes, middle_class:
        Otsu with 2 or 3 classes; with 3, whether the middle class is ``foreground``
        (default) or ``background``.
    threshold_smoothing_scale:
        Gaussian smoothing before thresholding, in CellProfiler's scale (0: none, default).
    threshold_correction_factor:
        Multiplies the computed threshold (1.0); below 1 takes in dimmer cytoplasm.
    threshold_bounds:
        Lower and upper bounds on the threshold ((0.0, 1.0)), in CellProfiler's 0..1 scale.
    manual_threshold:
        The threshold of the ``manual`` method.
    log_transform:
        Threshold the log of the intensities (Li and Otsu; default off).
    fill_holes:
        Fill holes inside each cell ("Fill holes in identified objects?", yes).
    discard_border:
        Drop cells touching the field's border together with their nuclei, renumbering both
        (:func:`discard_border`; CellProfiler's "Discard secondary objects touching the border
        of the image?" with "Discard the associated primary objects?"; default no).
    shrink_nuclei:
        Cytoplasm keeps the nucleus's outline pixels (IdentifyTertiaryObjects' "Shrink
        smaller object prior to subtraction?", yes), so no cytoplasm is ever empty; off, the
        cytoplasm is exactly the cell minus its nucleus and can be empty (:func:`cytoplasm`).
    model:
        The cell model (name or file) of the ``model`` method; the pipeline loads it.
    foreground_threshold:
        The ``model`` method's cell probability above which a pixel belongs to a cell.

    Examples
    --------
    >>> CellSettings().threshold.method
    'minimum_cross_entropy'
    >>> CellSettings(distance=-1)
    Traceback (most recent call last):
    ...
    cellseg_hcs.errors.SettingError: cell distance -1 must be 0 pixels or more.
    """

    channel: ChannelChoice | int | str | None = None
    method: str = "propagation"
    regularization_factor: float = 0.05
    distance: int = 10
    threshold_method: str = "minimum_cross_entropy"
    otsu_classes: int = 2
    middle_class: str = "foreground"
    threshold_smoothing_scale: float = 0.0
    threshold_correction_factor: float = 1.0
    threshold_bounds: tuple[float, float] = (0.0, 1.0)
    manual_threshold: float = 0.0
    log_transform: bool = False
    fill_holes: bool = True
    discard_border: bool = False
    shrink_nuclei: bool = True
    model: str | None = None
    foreground_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.channel is not None:
            choices = parse_channels(self.channel)
            if len(choices) != 1:
                raise SettingError(f"cell channel {self.channel!r} must be one channel.")
            object.__setattr__(self, "channel", choices[0])
        if self.method not in CELL_METHOD_NAMES:
            raise SettingError(
                f"cell method {self.method!r} is not one of {', '.join(CELL_METHOD_NAMES)}."
            )
        _check_number("regularization factor", self.regularization_factor, low=0.0)
        if isinstance(self.distance, bool) or not isinstance(self.distance, int):
            raise SettingError(f"cell distance {self.distance!r} must be a whole number of pixels.")
        if self.distance < 0:
            raise SettingError(f"cell distance {self.distance} must be 0 pixels or more.")
        if self.threshold_method not in THRESHOLD_METHOD_NAMES:
            raise SettingError(
                f"cell threshold method {self.threshold_method!r} is not one of "
                f"{', '.join(THRESHOLD_METHOD_NAMES)}."
            )
        if self.otsu_classes not in (2, 3) or isinstance(self.otsu_classes, bool):
            raise SettingError(f"Otsu classes {self.otsu_classes!r} must be 2 or 3.")
        if self.middle_class not in MIDDLE_CLASSES:
            raise SettingError(
                f"middle class {self.middle_class!r} must be foreground or background."
            )
        _check_number("threshold smoothing scale", self.threshold_smoothing_scale, low=0.0)
        _check_number("threshold correction factor", self.threshold_correction_factor, low=0.0)
        bounds = self.threshold_bounds
        if (
            not isinstance(bounds, (tuple, list))
            or len(bounds) != 2
            or not all(_is_number(b) for b in bounds)
            or not 0.0 <= bounds[0] <= bounds[1] <= 1.0
        ):
            raise SettingError(
                f"threshold bounds {bounds!r} must be two numbers, lower then upper, within 0..1."
            )
        object.__setattr__(self, "threshold_bounds", (float(bounds[0]), float(bounds[1])))
        _check_number("manual threshold", self.manual_threshold, low=0.0, high=1.0)
        _check_number("cell foreground threshold", self.foreground_threshold, low=0.0, high=1.0)
        for name in ("log_transform", "fill_holes", "discard_border", "shrink_nuclei"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(f"{name.replace('_', ' ')} must be yes or no (True/False).")
        if self.method == "model" and not self.model:
            raise SettingError("the model cell method needs a cell model (model=NAME or FILE).")

    @property
    def threshold(self) -> ThresholdChoice:
        """The threshold settings, as :mod:`cellseg_hcs.field.threshold` reads them."""
        return ThresholdChoice(
            method=self.threshold_method,
            otsu_classes=self.otsu_classes,
            middle_class=self.middle_class,
            smoothing_scale=float(self.threshold_smoothing_scale),
            correction_factor=float(self.threshold_correction_factor),
            bounds=self.threshold_bounds,
            manual=float(self.manual_threshold),
            log_transform=self.log_transform,
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # numpy floats too


def _check_number(name: str, value: object, low: float, high: float | None = None) -> None:
    import math

    if not _is_number(value) or not math.isfinite(value) or value < low:
        raise SettingError(f"{name} {value!r} must be a number of {low:g} or more.")
    if high is not None and value > high:
        raise SettingError(f"{name} {value!r} must be from {low:g} to {high:g}.")


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

    model: str = _setting("nuclei", "Built-in model name or a .safetensors model file.")
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
