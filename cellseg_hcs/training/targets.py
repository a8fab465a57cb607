"""Training targets made from instance labels: foreground and a map with one peak per object.

Two maps can serve as the second target, both 1 at an object's centre and falling towards its
edge, so that the seeded watershed finds one seed per object (see :mod:`.postprocess`):

- ``"centre"`` (the default): 1 minus the distance to the object's centre (its innermost
  pixel), divided by the largest such distance in the object. It has a single peak in
  every object, however irregular: kidney-shaped, lobed and elongated nuclei stay whole.
- ``"distance"``: each pixel's distance to the object's edge, divided by the object's
  maximum. An irregular object has one peak per lobe, and the seeded watershed splits it
  there: decoded from the true maps of the mnfinder validation images, it gives AP 0.60
  against 0.97 for ``"centre"``. Kept to read and fine-tune older models.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def instance_distance(labels: np.ndarray) -> np.ndarray:
    """Distance of each object pixel to its object's edge, divided by the object's maximum.

    Each object peaks at 1 in its centre and falls to a small value at its edge; touching
    objects are separated because the distance is computed per object. Background is 0.

    Examples
    --------
    >>> labels = np.zeros((5, 9), int); labels[1:4, 1:4] = 1; labels[1:4, 4:8] = 2
    >>> instance_distance(labels)[2].round(2)
    array([0. , 0.5, 1. , 0.5, 0.5, 1. , 1. , 0.5, 0. ], dtype=float32)
    """
    out = np.zeros(labels.shape, dtype=np.float32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        mask = labels[padded] == index
        dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        peak = dist.max()
        if peak > 0:
            out[padded][mask] = (dist[mask] / peak).astype(np.float32)
    return out


def centre_map(labels: np.ndarray) -> np.ndarray:
    """1 at each object's centre, falling with the distance from it to 0 past its farthest pixel.

    The centre is the object's innermost pixel (farthest from its edge; of several, the one
    nearest their middle), so it lies inside the object whatever its shape. A convex object
    has exactly one peak, at its centre, and so do kidney-shaped and lobed nuclei, which are
    not split into their lobes. (An object with a notch deeper than about half its width can
    show a second, lower peak beside the notch.) Background is 0.

    Examples
    --------
    >>> labels = np.zeros((3, 9), int); labels[:, :3] = 1; labels[:, 3:8] = 2
    >>> (100 * centre_map(labels)[1]).round().astype(int)
    array([ 59, 100,  59,  38,  69, 100,  69,  38,   0])
    """
    out = np.zeros(labels.shape, dtype=np.float32)
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        inside = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        top_rows, top_cols = np.nonzero(inside == inside.max())
        middle = np.argmin(np.hypot(top_rows - top_rows.mean(), top_cols - top_cols.mean()))
        centre_y, centre_x = top_rows[middle], top_cols[middle]
        rows, cols = np.nonzero(mask)
        distance = np.hypot(rows - centre_y, cols - centre_x)
        out[box][rows, cols] = (1 - distance / (distance.max() + 1)).astype(np.float32)
    return out


TARGETS = {"centre": centre_map, "distance": instance_distance}


def instance_targets(
    labels: np.ndarray, target: str = "centre", object_classes: np.ndarray | None = None
) -> np.ndarray:
    """Stack the training targets for an instance label image: (foreground, ``target`` map).

    ``target`` names the second map: ``"centre"`` (:func:`centre_map`) or ``"distance"``
    (:func:`instance_distance`). With ``object_classes`` (each object's class index, by
    label id), a third plane holds each pixel's class index (:func:`class_index`).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    labels = np.asarray(labels)
    planes = [(labels > 0).astype(np.float32), TARGETS[target](labels)]
    if object_classes is not None:
        planes.append(class_index(labels, object_classes).astype(np.float32))
    return np.stack(planes)


#: The class index of pixels that carry no class (background): ignored by the class loss.
NO_CLASS = -1


def class_index(labels: np.ndarray, object_classes: np.ndarray) -> np.ndarray:
    """Each pixel's class index (int64), :data:`NO_CLASS` on background.

    ``object_classes[i]`` is the class index of object ``i`` (entry 0, background, is
    ignored; an object without a class, index ``NO_CLASS``, is ignored too).

    Examples
    --------
    >>> class_index(np.array([[0, 1, 2, 2]]), np.array([-1, 1, 0]))
    array([[-1,  1,  0,  0]])
    """
    labels = np.asarray(labels)
    lookup = np.full(max(int(labels.max()), len(object_classes) - 1) + 1, NO_CLASS, np.int64)
    lookup[: len(object_classes)] = object_classes
    lookup[0] = NO_CLASS
    return lookup[labels]
