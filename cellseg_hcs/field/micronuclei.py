"""Objects of a model with classes: nuclei, micronuclei (their own object set) and parents.

A model with a class head (``ModelInfo.classes``) gives every pixel class probabilities
beside its foreground probability (:mod:`cellseg_hcs.field.classes`). Each object set is
decoded from its own foreground (the foreground probability times its classes' summed
probability) with its own post-processing: the model's own objects (``Nuclei``) with the
model's ``postprocess``, the others (``Micronuclei``) with ``object_postprocess[name]``.
Micronuclei are tiny (a few to about 100 pixels), so they are never filtered by the nuclei's
size or score filters, nor merged into a nucleus: a pixel is a nucleus pixel or a
micronucleus pixel. Each object of another set gets a parent among the model's own
objects by the set's ``parent_rule`` (:data:`PARENT_RULES`), by default the nearest one by
boundary distance (:func:`~cellseg_hcs.field.relations.nearest_parents`).

Examples
--------
>>> decoded = decode_objects(maps, image, model.info)  # doctest: +SKIP
>>> decoded.parents[("Micronuclei", "Nuclei")]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import SettingError
from ..settings import PostprocessSettings
from .classes import class_maps, object_class_probabilities, object_foreground, object_sets
from .object_score import ObjectScore
from .postprocess import maps_to_labels
from .relations import PARENT_RULES, distance_to, drop_enclosed

#: How micronuclei are decoded unless the model says otherwise (its ``object_postprocess``):
#: no size filter beyond 3 pixels, no score filter, one object per peak of the centre map.
OBJECT_SET_DEFAULTS: dict[str, Any] = {
    "foreground_threshold": 0.5,
    "seeds": "peaks",
    "peak_height": 0.3,
    "min_size": 3,
    "min_size_fraction": 0.0,
    "min_score": 0.0,
    "merge_height": 0.0,
    "fill_holes": True,
}
#: Keys of an object set's settings that are not its post-processing:
#: ``parent_rule``, a name in :data:`PARENT_RULES` (default ``"boundary"``);
#: ``parent_distance``, the farthest (pixels) a parent may be from its child, pixel centre to
#: pixel centre (touching: 1); a child whose rule finds no primary object that near has
#: parent 0. None: no limit;
#: ``class_threshold``, the summed probability of the set's classes a pixel needs to be one of
#: the set's (default None: more than any other set's);
#: ``max_nucleus_ring``, the largest share of an object's one-pixel outer ring (4-connected)
#: that may be the model's own objects: a micronucleus lies outside its nucleus, so a bright
#: spot mostly ringed by nucleus is dropped (default None: no limit);
#: ``score``, a learned score (:class:`~cellseg_hcs.field.object_score.ObjectScore`, in its
#: dict form): objects it scores under its cut are dropped (default None: none).
SET_KEYS = ("parent_rule", "parent_distance", "class_threshold", "max_nucleus_ring", "score")


@dataclass
class DecodedObjects:
    """Every object set of one field, their parents and classes.

    ``labels``: each set's labels by name, the model's own set first. ``parents``: for each
    other set, by ``(child set, parent set)``, the parent's number of each child (0: none).
    ``classes``: by set name, each object's class name (the most probable class) and its
    class probabilities (N, K; the mean over its pixels, columns in ``ModelInfo.classes``
    order).
    """

    labels: dict[str, np.ndarray]
    parents: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    classes: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)


def object_set_settings(
    info: Any, name: str, overrides: dict[str, Any] | None = None
) -> tuple[PostprocessSettings, dict[str, Any]]:
    """The post-processing of object set ``name`` and its parent options.

    The model's own set has the model's ``postprocess``; another set has
    :data:`OBJECT_SET_DEFAULTS` updated by the model's ``object_postprocess[name]``; then
    ``overrides`` on top of either.
    """
    if name == info.object_name:
        merged = {**info.postprocess, **(overrides or {})}
    else:
        merged = {
            **OBJECT_SET_DEFAULTS,
            **info.object_postprocess.get(name, {}),
            **(overrides or {}),
        }
    parent = {key: merged.pop(key) for key in SET_KEYS if key in merged}
    known = {f.name for f in fields(PostprocessSettings)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise SettingError(
            f"object set {name!r}: unknown post-processing setting(s) {', '.join(unknown)}."
        )
    return PostprocessSettings(**merged), parent


def decode_objects(
    maps: np.ndarray,
    image: np.ndarray | None,
    info: Any,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> DecodedObjects:
    """Every object set of a model's maps, with parents and per-object classes.

    Parameters
    ----------
    maps:
        The model's maps (foreground, centre, then one probability map per class).
    image:
        The prepared network input (for post-processing that joins alike fragments).
    info:
        The model's :class:`~cellseg_hcs.model.model.ModelInfo`.
    overrides:
        Settings by object set name (``{"Nuclei": {"min_score": 0.8}}``).
    """
    overrides = overrides or {}
    primary = info.object_name
    probabilities = class_maps(maps, info)
    labels: dict[str, np.ndarray] = {}
    parents: dict[tuple[str, str], np.ndarray] = {}
    transform = None  # the distance to the model's own objects, made once
    classes: dict[str, tuple[list[str], np.ndarray]] = {}
    for name in object_sets(info):
        settings, parent_options = object_set_settings(info, name, overrides.get(name))
        foreground = set_foreground(
            maps, info, name, labels.get(primary), parent_options.get("class_threshold")
        )
        labels[name] = maps_to_labels(
            foreground,
            maps[1],
            settings,
            image=image,
            exclude=None if name == primary else labels[primary] > 0,
        )
        if name != primary and parent_options.get("max_nucleus_ring") is not None:
            labels[name] = drop_enclosed(
                labels[name], labels[primary], parent_options["max_nucleus_ring"]
            )
        if name != primary:
            rule = parent_options.get("parent_rule", "boundary")
            if rule not in PARENT_RULES:
                raise SettingError(
                    f"object set {name!r}: unknown parent_rule {rule!r}; choose from "
                    f"{', '.join(PARENT_RULES)}."
                )
            score = parent_options.get("score")
            if transform is None and np.any(labels[primary]) and (score or rule != "centroid"):
                transform = distance_to(labels[primary])  # once per field, for both
            if score is not None:
                labels[name] = ObjectScore.from_dict(score).keep(
                    labels[name], labels[primary], maps, image, info, name, transform
                )
            parents[(name, primary)] = PARENT_RULES[rule](
                labels[name],
                labels[primary],
                parent_options.get("parent_distance"),
                transform=transform,
            )
        if info.classes:
            per_object = object_class_probabilities(labels[name], probabilities)
            names = [info.classes[k] for k in per_object.argmax(axis=1)] if len(per_object) else []
            classes[name] = (names, per_object)
    return DecodedObjects(labels, parents, classes)


def set_foreground(
    maps: np.ndarray,
    info: Any,
    name: str,
    primary: np.ndarray | None = None,
    class_threshold: float | None = None,
) -> np.ndarray:
    """The foreground object set ``name`` is decoded from: its classes' foreground, and for
    a set other than the model's own, none on the pixels of the model's objects ``primary``
    (a pixel is a nucleus pixel or a micronucleus pixel, never both)."""
    foreground = object_foreground(maps, info, name, class_threshold)
    if name == info.object_name or primary is None:
        return foreground
    return np.where(primary > 0, np.float32(0), foreground)
