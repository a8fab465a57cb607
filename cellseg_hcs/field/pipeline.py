"""One field's recipe: its channels in; named objects, parents, measurements and timings out.

::

    channels --prepare--> network input --predict (at scale)--> maps --objects--> Nuclei
                (select the model's channels,                        (post-processing;
                 check pixels, normalize)                             "auto": maybe once
                                                                       more at the objects'
                                                                       own scale)
    objects + channels --measure--> one row per object, CellProfiler's names

:class:`FieldPipeline` is the only place this recipe is written. ``segment`` (image files),
``Model.segment``, the plate run's tasks, ``serve`` and the CellProfiler module all call it;
the faces that overlap stages in threads or tasks (files, plates) call its stages in order,
and :meth:`FieldPipeline.run` calls them all for one field.

Examples
--------
>>> from cellseg_hcs.settings import FieldSettings
>>> settings = FieldSettings(model="nuclei")
>>> pipeline = FieldPipeline(settings, load_model(settings.model))  # doctest: +SKIP
>>> result = pipeline.run(image)  # doctest: +SKIP
>>> result.objects["Nuclei"].max(), result.seconds["Seconds_Predict"]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, SettingError
from ..settings import AUTO, FieldSettings
from .scale import auto_scale, predict_at_scale, scale_for

BLANK_NOTE = "the image is blank (every pixel is 0)"


@dataclass
class FieldChannels:
    """The raw planes of one field, by channel name, and how to name the field in a sentence."""

    planes: dict[str, np.ndarray]
    where: str = "the image"

    @property
    def names(self) -> list[str]:
        return list(self.planes)

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.planes.values())).shape

    @classmethod
    def from_array(
        cls, image: np.ndarray, names: Sequence[str] | None = None, where: str = "the image"
    ) -> FieldChannels:
        """Planes of a YX, CYX or YXC array (the channel axis is the shorter end one); names
        from the file where it has them, else ``C0``, ``C1``..."""
        image = np.asarray(image)
        image = np.squeeze(image) if image.ndim > 3 else image
        if image.ndim == 2:
            planes = [image]
        elif image.ndim == 3:
            planes = list(np.moveaxis(image, -1, 0) if image.shape[-1] < image.shape[0] else image)
        else:
            raise InputError(f"{where}: expected a 2-D image with channels, got {image.shape}.")
        if not names or len(names) != len(planes):
            names = [f"C{index}" for index in range(len(planes))]
        return cls(dict(zip(names, planes)), where)


@dataclass
class PreparedField:
    """A field ready for the network: its raw channels and the normalized network input."""

    channels: FieldChannels
    input: np.ndarray
    """The network's normalized float32 input (C, H, W)."""
    blank: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    cell_stain: np.ndarray | None = None
    """The raw plane the cells grow on, when the settings make cells."""


@dataclass
class FieldResult:
    """What the recipe made of one field.

    ``objects`` holds each object set's labels by name (``Nuclei``; ``Cells``, ``Cytoplasm``,
    ``Micronuclei`` where the settings make them); ``parents`` the parent object of every
    child object, by ``(child set, parent set)`` (``("Cells", "Nuclei")``: cell k's
    nucleus); ``seconds`` the time of each stage (``Seconds_Predict``,
    ``Seconds_Postprocess``, ``Seconds_Cells``, ``Seconds_Measure``); ``notes`` what a person
    should know about the field (a blank image); ``features`` the measurements when they were
    asked for. A model with classes fills ``classes``: by set name, each object's most
    probable class and its class probabilities (N, K; columns in ``class_names`` order), as
    :class:`~cellseg_hcs.field.micronuclei.DecodedObjects` has them.
    """

    objects: dict[str, np.ndarray]
    primary: str
    scale: float = 1.0
    diameter: float | None = None
    """The objects' median diameter that ``diameter="auto"`` measured, in pixels."""
    parents: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    maps: np.ndarray | None = None
    features: Any = None
    tables: dict[str, Any] = field(default_factory=dict)
    """Measurements of the object sets not in a cell's row (``Micronuclei``), by name."""
    classes: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    @property
    def labels(self) -> np.ndarray:
        """The primary objects' labels (the model's objects: ``Nuclei``)."""
        return self.objects[self.primary]

    @property
    def count(self) -> int:
        return int(self.labels.max())


def check_object_name(info: Any, name: str, cells: bool = False) -> None:
    """Refuse a name for the model's objects that another object set of the run has: the
    model's other sets (``Micronuclei``), and ``Cells`` and ``Cytoplasm`` when cells are
    grown. One set would silently replace the other."""
    from .classes import object_sets

    taken = set(object_sets(info)) - {info.object_name}
    if cells:
        taken |= {"Cells", "Cytoplasm"}
    if name in taken:
        raise SettingError(
            f"the object name {name!r} is taken by another object set of this run; "
            f"name the model's {info.object_name} otherwise (--object)."
        )


class FieldPipeline:
    """The recipe for one field, with one model and one runtime for every field it is given.

    Parameters
    ----------
    settings:
        How to segment (:class:`~cellseg_hcs.settings.FieldSettings`).
    model:
        The loaded model (``load_model(settings.model)``, or one in memory).
    runtime:
        Something with ``predict(field) -> maps``; by default the model's runtime for the
        settings' backend, device and tiling, made on first use.
    object_name:
        What the model's objects are called (default: the model's own, ``Nuclei``).
    cell_model:
        The loaded cell model of ``settings.cells.method == "model"``
        (:meth:`cellseg_hcs.model.model.Model.pipeline` loads it).
    measure_threads:
        Threads that measure a field's feature groups at once: the cores this recipe may
        use while it measures (a plate worker's share of the machine). The values are the
        same for any number.
    """

    def __init__(
        self,
        settings: FieldSettings,
        model: Any,
        runtime: Any = None,
        object_name: str | None = None,
        cell_model: Any = None,
        measure_threads: int = 1,
    ) -> None:
        cells = settings.cells
        if cells is not None and cells.method == "model" and cell_model is None:
            raise SettingError("the model cell method needs its cell model loaded.")
        self.settings = settings
        self.model = model
        self._runtime = runtime
        self.primary = object_name or model.info.object_name
        check_object_name(model.info, self.primary, cells is not None)
        self.cell_model = cell_model
        self.measure_threads = max(1, int(measure_threads))

    @property
    def runtime(self):
        if self._runtime is None:
            settings = self.settings
            self._runtime = self.model.runtime(
                settings.backend, settings.device, **settings.runtime_options
            )
        return self._runtime

    # ------------------------------------------------------------------ stages
    def prepare(self, channels: FieldChannels) -> PreparedField:
        """The model's channels chosen, their pixels checked, and normalized."""
        started = time.perf_counter()
        planes = self.model_planes(channels)
        blank = not any(np.any(plane) for plane in planes)
        if blank:  # an empty well or a failed acquisition: nothing to normalize or predict
            network_input = np.zeros((len(planes), *channels.shape), np.float32)
        else:
            stacked = planes[0] if len(planes) == 1 else np.stack(planes)
            network_input = self.model.prepare(stacked, 0 if stacked.ndim == 2 else None)
        seconds = {"Seconds_Normalize": time.perf_counter() - started}
        return PreparedField(channels, network_input, blank, seconds, self.cell_stain(channels))

    def cell_stain(self, channels: FieldChannels) -> np.ndarray | None:
        """The plane the cells grow on, checked: it exists and is not the nuclei's."""
        cells = self.settings.cells
        if cells is None:
            return None
        index = cells.channel.resolve(channels.names, channels.where)
        nuclei = [c.resolve(channels.names, channels.where) for c in self.settings.channel] or [0]
        if index in nuclei:
            raise SettingError(
                f"the cell channel {channels.names[index]!r} is the nuclei's channel; give the "
                "cytoplasm, membrane or actin stain the cells grow on."
            )
        plane = channels.planes[channels.names[index]]
        problem = pixel_problem(plane)
        if problem:
            raise InputError(f"{channels.where}, cell channel {channels.names[index]!r}, {problem}")
        return plane

    def model_planes(self, channels: FieldChannels) -> list[np.ndarray]:
        """The planes the model reads, in its order, each checked (one sentence if unusable)."""
        count = self.model.info.in_channels
        chosen = self.settings.channel
        if chosen and len(chosen) != count:
            raise SettingError(
                f"the model reads {count} channel(s), but {len(chosen)} were given "
                f"({', '.join(str(c.value) for c in chosen)})."
            )
        if chosen:
            indices = [choice.resolve(channels.names, channels.where) for choice in chosen]
        elif len(channels.planes) >= count:
            indices = list(range(count))
        else:
            raise SettingError(
                f"the model reads {count} channel(s), but {channels.where} has "
                f"{len(channels.planes)}."
            )
        planes = [channels.planes[channels.names[index]] for index in indices]
        for plane in planes:
            problem = pixel_problem(plane)
            if problem:
                raise InputError(f"{channels.where} {problem}")
        return planes

    def first_scale(self) -> float:
        """The scale the network first runs at: the settings' diameter's, else the field's own."""
        diameter = self.settings.diameter
        if diameter is None or diameter == AUTO:
            return 1.0
        return scale_for(diameter, self.model.info.working_diameter)

    def predict(self, field: PreparedField, scale: float) -> np.ndarray:
        """Whole-field maps (K, H, W), the network run at ``scale``."""
        if field.blank:
            return np.zeros((len(self.model.info.outputs), *field.channels.shape), np.float32)
        return predict_at_scale(self.runtime, field.input, scale)

    def objects(
        self,
        field: PreparedField,
        maps: np.ndarray,
        scale: float,
        diameter: float | None = None,
    ) -> FieldResult:
        """Named objects from the maps (the model's post-processing, the settings' overrides).

        A model with classes gives more object sets (``Micronuclei``) with their parents
        (:func:`.micronuclei.decode_objects`)."""
        started = time.perf_counter()
        parents: dict[tuple[str, str], np.ndarray] = {}
        classes: dict[str, tuple[list[str], np.ndarray]] = {}
        if self.model.info.classes:
            from .micronuclei import decode_objects

            info = self.model.info
            overrides = {info.object_name: self.settings.postprocess_overrides}
            decoded = decode_objects(maps, field.input, info, overrides)
            name = {info.object_name: self.primary}  # the model's objects, as named here
            objects = {name.get(k, k): v for k, v in decoded.labels.items()}
            parents = {(c, name.get(p, p)): v for (c, p), v in decoded.parents.items()}
            classes = {name.get(k, k): v for k, v in decoded.classes.items()}
        else:
            objects = {
                self.primary: self.model.labels_from_maps(
                    maps, field.input, **self.settings.postprocess_overrides
                )
            }
        seconds = {"Seconds_Postprocess": time.perf_counter() - started}
        notes = [BLANK_NOTE] if field.blank else []
        return FieldResult(
            objects,
            self.primary,
            scale,
            diameter,
            parents=parents,
            classes=classes,
            class_names=tuple(self.model.info.classes),
            seconds=seconds,
            notes=notes,
            maps=maps if self.settings.probabilities else None,
        )

    def second_scale(self, result: FieldResult) -> tuple[float, float] | None:
        """For ``diameter="auto"`` after a first pass at the field's own scale: the scale to
        run again at and the measured diameter, or None when the objects are near the model's
        size (or too few to tell). The one place "auto" decides (:func:`auto_scale`)."""
        if self.settings.diameter != AUTO or result.diameter is not None or result.scale != 1.0:
            return None
        scale, diameter = auto_scale(result.labels, self.model.info.working_diameter)
        result.diameter = diameter
        return (scale, diameter) if scale != 1.0 else None

    def compartments(self, field: PreparedField, result: FieldResult) -> FieldResult:
        """Cells grown from the nuclei on the cell stain, and the cytoplasm, when the settings
        ask: cell k, cytoplasm k and nucleus k are one cell (:func:`.cells.cell_objects`)."""
        cells = self.settings.cells
        if cells is None:
            return result
        from .cells import cell_objects

        started = time.perf_counter()
        source = field.cell_stain
        if cells.method == "model":
            source = self.cell_model.predict_maps(
                np.stack([field.cell_stain, field.channels.planes[self._nuclei_name(field)]]),
                backend=self.settings.backend,
                device=self.settings.device,
            )
        grown = cell_objects(result.labels, source, cells, notes=result.notes)
        renumbered = _new_numbers(result.labels, grown["Nuclei"])
        for key, numbers in result.parents.items():  # micronuclei follow their nuclei
            if key[1] == self.primary:
                result.parents[key] = renumbered[numbers]
        if self.primary in result.classes:  # so do the nuclei's classes
            names, probabilities = result.classes[self.primary]
            kept = np.flatnonzero(renumbered[1:])[np.argsort(renumbered[1:][renumbered[1:] > 0])]
            result.classes[self.primary] = ([names[i] for i in kept], probabilities[kept])
        result.objects = {
            **result.objects,
            self.primary: grown["Nuclei"],
            "Cells": grown["Cells"],
            "Cytoplasm": grown["Cytoplasm"],
        }
        numbers = np.arange(1, int(grown["Cells"].max()) + 1)
        result.parents[("Cells", self.primary)] = numbers
        result.parents[("Cytoplasm", "Cells")] = numbers
        result.parents[("Cytoplasm", self.primary)] = numbers
        result.seconds["Seconds_Cells"] = time.perf_counter() - started
        return result

    def _nuclei_name(self, field: PreparedField) -> str:
        names = field.channels.names
        chosen = self.settings.channel
        return names[chosen[0].resolve(names, field.channels.where)] if chosen else names[0]

    def measure(
        self,
        field: PreparedField,
        result: FieldResult,
        features: str | Sequence[str],
        metadata: Mapping[str, object] | None = None,
    ) -> FieldResult:
        """Every object measured on the field's channels: one row per cell with the columns
        of each compartment (one row per nucleus in a nuclei-only field)."""
        from .profile import cell_profiles, own_tables

        started = time.perf_counter()
        planes = self.measured_planes(field.channels)
        threads = self.measure_threads
        result.features = cell_profiles(result, planes, features, metadata, threads)
        result.tables = own_tables(result, planes, features, metadata, threads)
        result.seconds["Seconds_Measure"] = time.perf_counter() - started
        return result

    def measured_planes(self, channels: FieldChannels) -> dict[str, np.ndarray]:
        """The channels measured: ``settings.measure_channels``, else all of them."""
        chosen = self.settings.measure_channels
        if not chosen:
            return channels.planes
        names = [channels.names[c.resolve(channels.names, channels.where)] for c in chosen]
        return {name: channels.planes[name] for name in names}

    # ------------------------------------------------------------------ the whole recipe
    def run(
        self,
        image: FieldChannels | np.ndarray,
        channel_names: Sequence[str] | None = None,
        *,
        scale: float | None = None,
        features: str | Sequence[str] | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> FieldResult:
        """Every stage for one field, in order.

        ``scale`` runs the network at that scale (a plate measures ``auto`` once for all its
        fields); by default the settings' diameter decides. ``features`` measures the objects.
        """
        if not isinstance(image, FieldChannels):
            image = FieldChannels.from_array(image, channel_names)
        field_ = self.prepare(image)
        first = self.first_scale() if scale is None else scale
        started = time.perf_counter()
        maps = self.predict(field_, first)
        predict_seconds = time.perf_counter() - started
        result = self.objects(field_, maps, first)
        again = self.second_scale(result) if scale is None else None
        if again is not None:
            started = time.perf_counter()
            maps = self.predict(field_, again[0])
            predict_seconds += time.perf_counter() - started
            result = self.objects(field_, maps, *again)
        self.compartments(field_, result)
        result.seconds = {**field_.seconds, "Seconds_Predict": predict_seconds, **result.seconds}
        if features is not None:
            self.measure(field_, result, features, metadata)
        return result


def _new_numbers(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Old object number -> new one (0: dropped), for objects renumbered but not reshaped."""
    lookup = np.zeros(int(before.max()) + 1, dtype=np.int64)
    kept = (before > 0) & (after > 0)
    lookup[before[kept]] = after[kept]
    return lookup


def pixel_problem(plane: np.ndarray) -> str | None:
    """Why a plane cannot be segmented (the end of a sentence), or None when it can."""
    if plane.dtype.kind not in "uif":
        return f"has pixel type {plane.dtype}, not an integer or float image."
    if plane.ndim != 2 or min(plane.shape) < 8:
        return f"has shape {plane.shape}, not a 2-D image of 8 pixels or more."
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        return "has NaN or infinite pixels."
    return None
