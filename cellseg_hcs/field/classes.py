"""The class head of a model: which output maps are classes, and which object set each feeds.

A model with classes (``ModelInfo.classes``) outputs, after foreground and centre, one
probability map per class (they sum to 1 at every pixel). Each class belongs to one object
set: the model's own (``ModelInfo.object_name``, e.g. Nuclei) unless
``ModelInfo.class_objects`` routes it to another (``{"micronucleus": "Micronuclei"}``).
The foreground of an object set is the foreground probability on the pixels where its classes
are together the most probable set, and 0 elsewhere: a pixel belongs to one set, and the set's
post-processing (thresholds, ``min_score``) reads the foreground probability itself, as for a
model without classes. (Multiplying the foreground by the class probability instead made a
half-trained class head lower every nucleus's score under the shipped ``min_score`` of 0.9:
no nuclei at all.) Kept free of torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def class_maps(maps: np.ndarray, info: Any) -> np.ndarray:
    """The class probability maps (K, H, W) of a model's output maps (the last K)."""
    count = len(info.classes)
    return np.asarray(maps)[len(maps) - count :] if count else np.zeros((0, *maps.shape[1:]))


def object_sets(info: Any) -> dict[str, list[int]]:
    """Object set name -> the indices of its classes, the model's own set first.

    A model without classes has its own set only, with no class indices.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> info = SimpleNamespace(object_name="Nuclei", classes=("nucleus", "micronucleus"),
    ...                        class_objects={"micronucleus": "Micronuclei"})
    >>> object_sets(info)
    {'Nuclei': [0], 'Micronuclei': [1]}
    """
    sets: dict[str, list[int]] = {info.object_name: []}
    for index, name in enumerate(info.classes):
        sets.setdefault(info.class_objects.get(name, info.object_name), []).append(index)
    return sets


def object_foreground(
    maps: np.ndarray,
    info: Any,
    object_set: str | None = None,
    class_threshold: float | None = None,
) -> np.ndarray:
    """Foreground probability of one object set (default: the model's own objects), 0 on the
    pixels of other sets: those where its classes' summed probability is below the other
    sets' (or below ``class_threshold``, when given).

    For a model without classes this is the foreground map itself.
    """
    object_set = object_set or info.object_name
    foreground = np.asarray(maps[0])
    if not info.classes:
        return foreground
    indices = object_sets(info).get(object_set)
    if indices is None:
        raise KeyError(f"the model has no object set {object_set!r}")
    probabilities = class_maps(maps, info)
    sets = object_sets(info)
    mine = probabilities[indices].sum(axis=0)
    others = [probabilities[i].sum(axis=0) for key, i in sets.items() if key != object_set and i]
    if class_threshold is not None:
        wins = mine >= class_threshold
    elif others:
        wins = mine >= np.max(others, axis=0)
    else:
        return foreground
    return np.where(wins, foreground, np.float32(0)).astype(foreground.dtype, copy=False)


def object_class_probabilities(
    labels: np.ndarray, probabilities: np.ndarray, count: int | None = None
) -> np.ndarray:
    """Each object's class probabilities (N, K): the mean over its pixels (area-weighted).

    Row ``i`` belongs to object ``i + 1``; ``count`` (default: the largest label) sets N.
    An object number with no pixels gets a row of zeros.

    Examples
    --------
    >>> labels = np.array([[1, 1, 0, 2]])
    >>> probabilities = np.array([[[0.9, 0.7, 0.5, 0.2]], [[0.1, 0.3, 0.5, 0.8]]])
    >>> object_class_probabilities(labels, probabilities).round(2)
    array([[0.8, 0.2],
           [0.2, 0.8]])
    """
    labels = np.asarray(labels)
    count = int(labels.max()) if count is None else int(count)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)[1 : count + 1].astype(np.float64)
    sums = (
        np.stack(
            [
                np.bincount(flat, weights=plane.ravel(), minlength=count + 1)[1 : count + 1]
                for plane in np.asarray(probabilities)
            ],
            axis=1,
        )
        if len(probabilities)
        else np.zeros((count, 0))
    )
    return np.divide(sums, area[:, None], out=np.zeros_like(sums), where=area[:, None] > 0)
