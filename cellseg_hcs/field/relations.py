"""Where objects lie against each other: the ring of a child on the primary objects, and
which primary object (nucleus) each child object (micronucleus) belongs to.

:data:`PARENT_RULES` names the rules a model's object set may ask for (``parent_rule``):
``boundary`` (:func:`nearest_parents`, the default), ``centroid`` and ``vote``. Each takes
``transform``, the field's :func:`distance_to` its parents when already made: one field's
decoding makes it once for the parent rule and the learned score. Each takes
``max_distance`` too, measured the same way by every rule: from the child's pixels to its
parent's, pixel centre to pixel centre (a child that touches its parent is at 1, one that
overlaps it at 0); a child whose parent would be farther gets 0 (none).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


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
    owner, pixel = outer_ring(children, other_children=True)
    total = np.bincount(owner, minlength=count)
    on_primary = np.bincount(owner, weights=np.asarray(primary).ravel()[pixel] > 0, minlength=count)
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
    return keep_objects(children, shares <= max_share)


def keep_objects(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``labels`` with only the objects where ``keep`` (``keep[i]``: object ``i + 1``),
    numbered 1..N in their order.

    Examples
    --------
    >>> keep_objects(np.array([[1, 2, 3]]), np.array([True, False, True]))
    array([[1, 0, 2]])
    """
    labels = np.asarray(labels)
    keep = np.r_[False, np.asarray(keep, bool)]
    numbers = np.zeros(keep.size, dtype=labels.dtype)
    numbers[keep] = np.arange(1, keep.sum() + 1)
    return numbers[labels]


def outer_ring(
    children: np.ndarray, connectivity: int = 1, other_children: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Each child object's one-pixel outer ring: the pixels outside it with a neighbour in
    it (4-connected with ``connectivity`` 1, 8-connected with 2), within the image; the
    pixels of other children are in it with ``other_children``, else left out. Returns
    (child index 0..N-1, flat pixel index), each pair once; a pixel next to two children is
    in both rings.

    Examples
    --------
    >>> children = np.array([[1, 0, 2]])
    >>> outer_ring(children)  # the middle pixel rings both
    (array([0, 1]), array([1, 1]))
    """
    children = np.asarray(children)
    padded = np.pad(children, 1)
    height, width = children.shape
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 2:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    flat = children.ravel()
    pairs = []
    for dy, dx in steps:
        neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width].ravel()
        outside = (neighbour != flat) if other_children else (flat == 0)
        ring = np.flatnonzero(outside & (neighbour > 0))
        pairs.append(neighbour[ring].astype(np.int64) * children.size + ring)
    unique = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
    owner, pixel = np.divmod(unique, children.size)
    return owner - 1, pixel


def distance_to(parents: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Every pixel's distance to the nearest parent object's pixel, and that pixel's (rows,
    cols): the one transform the boundary and vote rules and the score's distances read."""
    return ndi.distance_transform_edt(np.asarray(parents) == 0, return_indices=True)


def nearest_parents(
    children: np.ndarray,
    parents: np.ndarray,
    max_distance: float | None = None,
    *,
    transform: tuple | None = None,
) -> np.ndarray:
    """For each child object, the number of the parent object nearest to it (0: none).

    The distance is boundary to boundary: from the child's pixel nearest any parent to
    that parent's nearest pixel, pixel centre to pixel centre (a child that touches a
    parent is at 1, one that overlaps it at 0). With ``max_distance``, a child farther than
    that from every parent gets 0.

    Examples
    --------
    >>> parents = np.zeros((1, 12), int); parents[0, :3] = 1; parents[0, 8:] = 2
    >>> children = np.zeros((1, 12), int); children[0, 4] = 1; children[0, 6] = 2
    >>> nearest_parents(children, parents)
    array([1, 2])
    """
    found, distance = nearest_objects(children, parents, transform)
    if max_distance is not None:
        found[distance > max_distance] = 0
    return found


def nearest_objects(
    children: np.ndarray, parents: np.ndarray, transform: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For each child object, the nearest parent object (0: none) and its boundary distance
    in pixels (inf: none), as :func:`nearest_parents` measures it (``transform``: the
    parents' :func:`distance_to`, when already made).

    Examples
    --------
    >>> parents = np.zeros((1, 12), int); parents[0, :3] = 1; parents[0, 8:] = 2
    >>> children = np.zeros((1, 12), int); children[0, 4] = 1; children[0, 6] = 2
    >>> nearest_objects(children, parents)
    (array([1, 2]), array([2., 2.]))
    """
    children = np.asarray(children)
    count = int(children.max()) if children.size else 0
    found = np.zeros(count, dtype=np.int64)
    nearest = np.full(count, np.inf)
    if count == 0 or not np.any(parents):
        return found, nearest
    distance, (rows, cols) = distance_to(parents) if transform is None else transform
    flat = children.ravel()
    inside = flat > 0
    ids = flat[inside]
    near = distance.ravel()[inside]
    # The pixel of each child nearest any parent: sort by (child, distance), take the first.
    order = np.lexsort((near, ids))
    first = order[np.r_[True, ids[order][1:] != ids[order][:-1]]]
    pixel = np.flatnonzero(inside)[first]
    found[ids[first] - 1] = np.asarray(parents)[rows.ravel()[pixel], cols.ravel()[pixel]]
    nearest[ids[first] - 1] = near[first]
    return found, nearest


def nearest_centre_parents(
    children: np.ndarray,
    parents: np.ndarray,
    max_distance: float | None = None,
    *,
    transform: tuple | None = None,
) -> np.ndarray:
    """For each child object, the parent object whose centroid is nearest its centroid
    (``transform`` is not needed, and ignored). With ``max_distance``, a child whose
    nearest-centred parent is farther than that (boundary to boundary, as
    :func:`nearest_parents` measures it) gets 0.

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
    _, index = cKDTree(parent_centres).query(child_centres.reshape(-1, 2))
    found[child_ids - 1] = parent_ids[index]
    if max_distance is not None:
        found[pair_distances(children, parents, found) > max_distance] = 0
    return found


def pair_distances(children: np.ndarray, parents: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """For each child object, its distance to the parent object ``chosen`` for it (``chosen[i]``
    for child ``i + 1``; 0: none, distance inf): the nearest pair of their pixels, pixel
    centre to pixel centre.

    Examples
    --------
    >>> parents = np.zeros((1, 12), int); parents[0, :3] = 1; parents[0, 8:] = 2
    >>> children = np.zeros((1, 12), int); children[0, 4] = 1
    >>> pair_distances(children, parents, np.array([2]))
    array([4.])
    """
    from scipy.spatial import cKDTree

    chosen = np.asarray(chosen)
    found = np.full(chosen.size, np.inf)
    child_pixels = ndi.value_indices(np.asarray(children), ignore_value=0)
    parent_pixels = ndi.value_indices(np.asarray(parents), ignore_value=0)
    trees: dict[int, cKDTree] = {}  # one per parent, however many children chose it
    for child, parent in enumerate(chosen.tolist(), start=1):
        if parent and child in child_pixels and parent in parent_pixels:
            if parent not in trees:
                trees[parent] = cKDTree(np.column_stack(parent_pixels[parent]))
            nearest, _ = trees[parent].query(np.column_stack(child_pixels[child]))
            found[child - 1] = nearest.min()
    return found


def pixel_vote_parents(
    children: np.ndarray,
    parents: np.ndarray,
    max_distance: float | None = None,
    *,
    transform: tuple | None = None,
) -> np.ndarray:
    """For each child object, the parent object nearest to most of its pixels (0: none).

    Each pixel of a child votes for the parent object nearest to it (boundary distance);
    the most votes win, equal votes go to the nearer parent. A child that touches two
    nuclei goes to the one that most of it lies against, where :func:`nearest_parents`
    can only take the first touching pixel's. With ``max_distance``, only the child's
    pixels within that distance of a parent vote: its parent is never farther, and a child
    with no such pixel gets 0.

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
    distance, (rows, cols) = distance_to(parents) if transform is None else transform
    inside = children > 0
    if max_distance is not None:
        inside &= distance <= max_distance
    if not inside.any():
        return found
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
    return found


#: How a child object (a micronucleus) finds its parent (a nucleus), by name.
PARENT_RULES = {
    "boundary": nearest_parents,
    "centroid": nearest_centre_parents,
    "vote": pixel_vote_parents,
}
