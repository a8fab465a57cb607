"""A learned score for the objects of a set: keep those a small logistic regression trusts.

A model's decoding finds candidates (micronuclei: tiny bright spots, some of them real, some
a bright spot of a nucleus or debris). Each candidate is described by what decoding already
knows: its size, the network's maps under it, where it lies against the model's own objects
(nuclei) and how bright it is on the network's prepared input against its surroundings
(:data:`FEATURES`). An :class:`ObjectScore`, stored in the model file with the set's
settings (``object_postprocess[set]["score"]``), turns them into the probability that the
candidate is a true object; candidates under its ``cut`` are dropped.

The regression is fitted by ``benchmarks/micronuclei_score.py`` (scikit-learn, out of fold
on annotated images); applying it needs only numpy.

Examples
--------
>>> score = ObjectScore.from_dict({"features": ["log_area"], "mean": [1.0], "scale": [1.0],
...     "weights": [2.0], "intercept": 0.0, "cut": 0.5})
>>> score.probability(np.array([[1.0], [2.0]])).round(3)
array([0.5  , 0.881])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import SettingError
from .classes import class_maps, object_sets
from .relations import keep_objects, nearest_objects, outer_ring, ring_share


@dataclass
class ObjectContext:
    """One field's candidates and what their features are computed from.

    ``children``: the candidates' labels (1..N); ``primary``: the model's own objects;
    ``maps``: the model's maps; ``image``: the network's prepared input (YX or CYX; its
    first plane is read); ``set_probability``: the summed probability of the set's classes;
    ``transform``: the primary objects' :func:`~.relations.distance_to`, when already made.
    """

    children: np.ndarray
    primary: np.ndarray
    maps: np.ndarray
    image: np.ndarray | None
    set_probability: np.ndarray
    transform: tuple | None = None

    @cached_property
    def ids(self) -> np.ndarray:
        return np.arange(1, int(self.children.max()) + 1)

    @cached_property
    def plane(self) -> np.ndarray:
        if self.image is None:
            raise SettingError("a learned object score reads the image, and none was given.")
        image = np.asarray(self.image, dtype=np.float64)
        return image[0] if image.ndim == 3 else image

    @cached_property
    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' pixels (flat indices) and each one's candidate index (0..N-1)."""
        flat = self.children.ravel()
        where = np.flatnonzero(flat)
        return where, flat[where].astype(np.int64) - 1

    @cached_property
    def area(self) -> np.ndarray:
        return np.bincount(self.pixels[1], minlength=self.ids.size)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Each candidate's mean of ``values`` over its pixels."""
        where, index = self.pixels
        sums = np.bincount(index, weights=np.ravel(values)[where], minlength=self.ids.size)
        return sums / np.maximum(self.area, 1)

    def maximum(self, values: np.ndarray) -> np.ndarray:
        """Each candidate's highest value of ``values`` over its pixels (0 for a number
        with none)."""
        where, index = self.pixels
        highest = np.full(self.ids.size, -np.inf)
        np.maximum.at(highest, index, np.ravel(values)[where].astype(np.float64))
        return np.where(self.area > 0, highest, 0.0)

    @cached_property
    def nearest(self) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's nearest primary object (0: none) and its boundary distance."""
        return nearest_objects(self.children, self.primary, self.transform)

    @cached_property
    def primary_means(self) -> np.ndarray:
        """Mean of the prepared input over each primary object, by number (0: none)."""
        count = int(self.primary.max())
        means = np.zeros(count + 1)
        if count:
            means[1:] = ndi.mean(self.plane, self.primary, np.arange(1, count + 1))
        return means


def _contrast_ring(context: ObjectContext) -> np.ndarray:
    """Mean of the prepared input over each candidate minus over its surroundings: its
    8-connected one-pixel outer ring, without other candidates' pixels (0: no ring)."""
    owner, pixel = outer_ring(context.children, connectivity=2)
    count = context.ids.size
    total = np.bincount(owner, minlength=count)
    sums = np.bincount(owner, weights=context.plane.ravel()[pixel], minlength=count)
    ring = np.divide(sums, total, out=np.zeros(count), where=total > 0)
    return np.where(total > 0, context.mean(context.plane) - ring, 0.0)


def _nucleus_area(context: ObjectContext) -> np.ndarray:
    nearest, _ = context.nearest
    areas = np.bincount(context.primary.ravel(), minlength=int(context.primary.max()) + 1)
    return np.where(nearest > 0, np.log(np.maximum(areas[nearest], 1)), 0.0)


def _contrast_nucleus(context: ObjectContext) -> np.ndarray:
    nearest, _ = context.nearest
    own = context.mean(context.plane)
    return np.where(nearest > 0, own - context.primary_means[nearest], 0.0)


def _distance(context: ObjectContext) -> np.ndarray:
    _, distance = context.nearest
    return np.log1p(np.minimum(distance, 1e4))


def _ring(context: ObjectContext) -> np.ndarray:
    return ring_share(context.children, context.primary)


#: Feature name -> what it measures of each candidate (an array of N values).
FEATURES: dict[str, Callable[[ObjectContext], np.ndarray]] = {
    "log_area": lambda c: np.log(np.maximum(c.area, 1)),
    "class_mean": lambda c: c.mean(c.set_probability),
    "class_max": lambda c: c.maximum(c.set_probability),
    "fg_mean": lambda c: c.mean(c.maps[0]),
    "centre_mean": lambda c: c.mean(c.maps[1]),
    "centre_max": lambda c: c.maximum(c.maps[1]),
    # share of the 4-connected one-pixel outer ring (other candidates' pixels in it, as not
    # nuclei) on the model's own objects (relations.ring_share)
    "ring": _ring,
    # log(1 + boundary distance) to the nearest of the model's own objects; with none in the
    # field, log(1 + 10,000): a spot with no nucleus anywhere is not a micronucleus
    "distance": _distance,
    # log area of that nearest object (0: none)
    "nucleus_area": _nucleus_area,
    # mean prepared input: the candidate's minus its 8-connected outer ring's (other
    # candidates' pixels left out; 0 when it has no such ring)
    "contrast_ring": _contrast_ring,
    # mean prepared input: the candidate's minus its nearest object's (0: none)
    "contrast_nucleus": _contrast_nucleus,
}


def object_features(
    children: np.ndarray,
    primary: np.ndarray,
    maps: np.ndarray,
    image: np.ndarray | None,
    info: Any,
    object_set: str,
    names: Sequence[str],
    transform: tuple | None = None,
) -> np.ndarray:
    """The features ``names`` (:data:`FEATURES`) of each object of ``children``: (N, F).

    ``primary``: the model's own objects; ``maps``: the model's maps; ``image``: the
    network's prepared input; ``object_set``: the set whose classes' probability the class
    features read; ``transform``: ``primary``'s :func:`~.relations.distance_to`, when
    already made.
    """
    unknown = [name for name in names if name not in FEATURES]
    if unknown:
        raise SettingError(
            f"unknown object score feature(s) {', '.join(unknown)}; "
            f"choose from {', '.join(FEATURES)}."
        )
    children = np.asarray(children)
    count = int(children.max()) if children.size else 0
    if count == 0:
        return np.zeros((0, len(names)))
    indices = object_sets(info).get(object_set) or []
    probabilities = class_maps(maps, info)
    set_probability = (
        probabilities[indices].sum(axis=0) if indices else np.asarray(maps[0], np.float32)
    )
    context = ObjectContext(children, np.asarray(primary), maps, image, set_probability, transform)
    return np.stack([np.asarray(FEATURES[name](context), np.float64) for name in names], axis=1)


@dataclass(frozen=True)
class ObjectScore:
    """A logistic regression on standardised features: ``probability = 1 / (1 +
    exp(-(((x - mean) / scale) @ weights + intercept)))``; objects under ``cut`` are
    dropped."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float
    cut: float

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ObjectScore:
        """Read the model file's form (lists), checked: known features, equal lengths."""
        try:
            score = cls(
                tuple(str(name) for name in raw["features"]),
                tuple(float(v) for v in raw["mean"]),
                tuple(float(v) for v in raw["scale"]),
                tuple(float(v) for v in raw["weights"]),
                float(raw["intercept"]),
                float(raw["cut"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SettingError(f"an object score needs {', '.join(cls.keys())} ({exc}).") from exc
        lengths = {len(score.features), len(score.mean), len(score.scale), len(score.weights)}
        if len(lengths) != 1:
            raise SettingError(
                "an object score's features, mean, scale and weights differ in length."
            )
        if any(s <= 0 for s in score.scale):
            raise SettingError("an object score's scales must be above 0.")
        unknown = [name for name in score.features if name not in FEATURES]
        if unknown:
            raise SettingError(f"unknown object score feature(s) {', '.join(unknown)}.")
        return score

    @staticmethod
    def keys() -> tuple[str, ...]:
        return ("features", "mean", "scale", "weights", "intercept", "cut")

    def to_dict(self) -> dict[str, Any]:
        """The model file's form (JSON lists)."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Each row's probability of being a true object."""
        standard = (np.asarray(features, np.float64) - self.mean) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(standard @ np.asarray(self.weights) + self.intercept)))

    def keep(
        self,
        children: np.ndarray,
        primary: np.ndarray,
        maps,
        image,
        info,
        object_set: str,
        transform: tuple | None = None,
    ) -> np.ndarray:
        """``children`` without the objects scored under ``cut``, the rest numbered 1..N
        (``transform``: ``primary``'s :func:`~.relations.distance_to`, when already made)."""
        children = np.asarray(children)
        features = object_features(
            children, primary, maps, image, info, object_set, self.features, transform
        )
        return keep_objects(children, self.probability(features) >= self.cut)
