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
boundary distance (:func:`nearest_parents`).

Examples
--------
>>> decoded = decode_objects(maps, image, model.info)  # doctest: +SKIP
>>> decoded.parents[("Micronuclei", "Nuclei")]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import SettingError
from ..settings import PostprocessSettings
from .classes import class_maps, object_class_probabilities, object_foreground, object_sets
from .object_score import ObjectScore
from .postprocess import maps_to_labels

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
#: ``parent_distance``, the farthest (pixels) a parent may be; a child with no primary object
#: that near has parent 0. None: no limit;
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
    classes: dict[str, tuple[list[str], np.ndarray]] = {}
    for name in object_sets(info):
        settings, parent_options = object_set_settings(info, name, overrides.get(name))
        foreground = set_foreground(
            maps, info, name, labels.get(primary), parent_options.get("class_threshold")
        )
        labels[name] = maps_to_labels(
            foreground, maps[1], settings, image=image if name == primary else None
        )
        if name != primary and parent_options.get("max_nucleus_ring") is not None:
            labels[name] = drop_enclosed(
                labels[name], labels[primary], parent_options["max_nucleus_ring"]
            )
        if name != primary and parent_options.get("score") is not None:
            score = ObjectScore.from_dict(parent_options["score"])
            labels[name] = score.keep(labels[name], labels[primary], maps, image, info, name)
        if name != primary:
            rule = parent_options.get("parent_rule", "boundary")
            if rule not in PARENT_RULES:
                raise SettingError(
                    f"object set {name!r}: unknown parent_rule {rule!r}; choose from "
                    f"{', '.join(PARENT_RULES)}."
                )
            parents[(name, primary)] = PARENT_RULES[rule](
                labels[name], labels[primary], parent_options.get("parent_distance")
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


def ring_share(children: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """For each child object, the share of its one-pixel outer ring that lies on the
    primary objects (the ring: the pixels outside the child with a 4-connected neighbour in
    it, within the image; another child's pixels count as not primary). ``share[i]`` is
    object ``i + 1``'s; 0 for a number with no pixels.

    Examples
    --------
    >>> primary = np.zeros((3, 5), int); primary[:, :2] = 1
    >>> children = np.zeros((3, 5), int); children[1, 2] = 1
    >>> ring_share(children, primary)  # ring: left (nucleus), right, up, down
    array([0.25])
    """
    children = np.asarray(children)
    count = int(children.max()) if children.size else 0
    if count == 0:
        return np.zeros(0)
    padded = np.pad(children, 1)
    height, width = children.shape
    pairs = []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        ring = np.flatnonzero((neighbour > 0) & (neighbour != children))
        pairs.append(neighbour.ravel()[ring].astype(np.int64) * children.size + ring)
    unique = np.unique(np.concatenate(pairs))  # each (child, ring pixel) once
    owner, pixel = np.divmod(unique, children.size)
    total = np.bincount(owner, minlength=count + 1)[1:]
    on_primary = np.bincount(
        owner, weights=np.asarray(primary).ravel()[pixel] > 0, minlength=count + 1
    )[1:]
    return np.divide(on_primary, total, out=np.zeros(count), where=total > 0)


def drop_enclosed(
    children: np.ndarray,
    primary: np.ndarray,
    max_share: float,
    shares: np.ndarray | None = None,
) -> np.ndarray:
    """``children`` without the objects whose ring is more than ``max_share`` primary
    objects (:func:`ring_share`, or ``shares`` when already known), the others numbered
    1..N in their order.

    Examples
    --------
    >>> primary = np.zeros((3, 6), int); primary[:, :2] = 1; primary[:, 3:] = 2
    >>> children = np.zeros((3, 6), int); children[1, 2] = 1; children[0, 5] = 2
    >>> drop_enclosed(children, primary, 0.5)[1, 2]  # ring: two nucleus of four pixels
    np.int64(1)
    >>> drop_enclosed(children, primary, 0.4).max()
    np.int64(0)
    """
    children = np.asarray(children)
    shares = ring_share(children, primary) if shares is None else shares
    keep = np.r_[False, shares <= max_share]
    new_ids = np.zeros(keep.size, dtype=children.dtype)
    new_ids[keep] = np.arange(1, keep.sum() + 1)
    return new_ids[children]


def nearest_parents(
    children: np.ndarray, parents: np.ndarray, max_distance: float | None = None
) -> np.ndarray:
    """For each child object, the number of the parent object nearest to it (0: none).

    The distance is boundary to boundary: from the child's pixel nearest any parent to
    that parent's nearest pixel (a child that touches or overlaps a parent is at 0). With
    ``max_distance``, a child farther than that from every parent gets 0.

    Examples
    --------
    >>> parents = np.zeros((1, 12), int); parents[0, :3] = 1; parents[0, 8:] = 2
    >>> children = np.zeros((1, 12), int); children[0, 4] = 1; children[0, 6] = 2
    >>> nearest_parents(children, parents)
    array([1, 2])
    """
    children = np.asarray(children)
    count = int(children.max())
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.any(parents):
        return np.zeros(count, dtype=np.int64)
    distance, (rows, cols) = ndi.distance_transform_edt(parents == 0, return_indices=True)
    flat = children.ravel()
    inside = flat > 0
    ids = flat[inside]
    near = distance.ravel()[inside]
    # The pixel of each child nearest any parent: sort by (child, distance), take the first.
    order = np.lexsort((near, ids))
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    pixel = np.flatnonzero(inside)[first]
    found = np.zeros(count, dtype=np.int64)
    found[ids[first] - 1] = parents[rows.ravel()[pixel], cols.ravel()[pixel]]
    if max_distance is not None:
        nearest = np.full(count, np.inf)
        nearest[ids[first] - 1] = near[first]
        found[nearest > max_distance] = 0
    return found


def nearest_centre_parents(
    children: np.ndarray, parents: np.ndarray, max_distance: float | None = None
) -> np.ndarray:
    """For each child object, the parent object whose centroid is nearest its centroid.

    Examples
    --------
    >>> parents = np.zeros((1, 12), int); parents[0, :3] = 1; parents[0, 7:] = 2
    >>> children = np.zeros((1, 12), int); children[0, 5] = 1
    >>> nearest_centre_parents(children, parents)
    array([1])
    """
    from scipy.spatial import cKDTree

    children, parents = np.asarray(children), np.asarray(parents)
    count = int(children.max())
    found = np.zeros(count, dtype=np.int64)
    parent_ids = np.unique(parents[parents > 0])
    if count == 0 or parent_ids.size == 0:
        return found
    child_ids = np.unique(children[children > 0])
    child_centres = np.asarray(ndi.center_of_mass(np.ones(children.shape), children, child_ids))
    parent_centres = np.asarray(ndi.center_of_mass(np.ones(parents.shape), parents, parent_ids))
    distance, index = cKDTree(parent_centres).query(child_centres.reshape(-1, 2))
    nearest = parent_ids[index]
    if max_distance is not None:
        nearest = np.where(distance > max_distance, 0, nearest)
    found[child_ids - 1] = nearest
    return found


def pixel_vote_parents(
    children: np.ndarray, parents: np.ndarray, max_distance: float | None = None
) -> np.ndarray:
    """For each child object, the parent object nearest to most of its pixels (0: none).

    Each pixel of a child votes for the parent object nearest to it (boundary distance);
    the most votes win, equal votes go to the nearer parent. A child that touches two
    nuclei goes to the one that most of it lies against, where :func:`nearest_parents`
    can only take the first touching pixel's. With ``max_distance``, a child farther than
    that from every parent gets 0.

    Examples
    --------
    >>> parents = np.zeros((3, 9), int); parents[:, :3] = 1; parents[2, 3:] = 2
    >>> children = np.zeros((3, 9), int); children[1, 3:6] = 1  # touches 1, lies along 2
    >>> pixel_vote_parents(children, parents)
    array([2])
    """
    children = np.asarray(children)
    count = int(children.max()) if children.size else 0
    found = np.zeros(count, dtype=np.int64)
    if count == 0 or not np.any(parents):
        return found
    distance, (rows, cols) = ndi.distance_transform_edt(parents == 0, return_indices=True)
    inside = children > 0
    ids = children[inside].astype(np.int64)
    voted = np.asarray(parents)[rows[inside], cols[inside]].astype(np.int64)
    near = distance[inside]
    span = int(voted.max()) + 1
    pair, where = np.unique(ids * span + voted, return_inverse=True)
    votes = np.bincount(where)
    closest = np.full(pair.size, np.inf)
    np.minimum.at(closest, where, near)
    child, parent = np.divmod(pair, span)
    order = np.lexsort((closest, -votes, child))  # by child: most votes, then nearest
    first = order[np.r_[True, child[order][1:] != child[order][:-1]]]
    found[child[first] - 1] = parent[first]
    if max_distance is not None:
        nearest = np.full(count, np.inf)
        np.minimum.at(nearest, child - 1, closest)
        found[nearest > max_distance] = 0
    return found


#: How a child object (a micronucleus) finds its parent (a nucleus), by name.
PARENT_RULES = {
    "boundary": nearest_parents,
    "centroid": nearest_centre_parents,
    "vote": pixel_vote_parents,
}
