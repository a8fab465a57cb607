"""The settings of the objects made from a model's maps: its post-processing thresholds
(:class:`PostprocessSettings`, carried in the model file) and the cells grown from its nuclei
(:class:`CellSettings`, CellProfiler's IdentifySecondaryObjects settings and defaults).

Part of the one settings type of a field (:class:`cellseg_hcs.settings.FieldSettings` holds
them); kept free of any import above it, so every module may read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .channels import ChannelChoice, parse_channels
from .errors import SettingError


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
    if not _is_number(value) or not math.isfinite(value) or value < low:
        raise SettingError(f"{name} {value!r} must be a number of {low:g} or more.")
    if high is not None and value > high:
        raise SettingError(f"{name} {value!r} must be from {low:g} to {high:g}.")
