"""MeasureObjectNeighbors with the objects as their own neighbours, "expand until adjacent".

CellProfiler 4.2.8 grows every object into the background (each background pixel takes
the label of its nearest object pixel) and then, object by object in its bounding box:

- neighbours: the other labels 4-adjacent to the grown object;
- percent touching: of the grown object's outline pixels (a pixel with any 8-neighbour of
  another value, or on the image edge), the share with an 8-neighbour of another object;
- first and second closest: the nearest other object centres (mean pixel coordinates of
  the objects as they are, not grown), ties to the lower number; the angle between the two.

Here the same rules run on the whole image at once (the growing compiled, with scipy's
choice among equally near object pixels; the neighbours and outlines counted in one
compiled pass), and the closest centres come from a k-d tree
rather than CellProfiler's matrix of all pairwise distances. As in CellProfiler,
with fewer than two objects everything is 0, and a missing second-closest object is number
0 at distance 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..postprocess import touching_pairs
from . import compiled
from .objects import FieldObjects

SCALE = "Expanded"
FEATURES = (
    "NumberOfNeighbors",
    "PercentTouching",
    "FirstClosestObjectNumber",
    "FirstClosestDistance",
    "SecondClosestObjectNumber",
    "SecondClosestDistance",
    "AngleBetweenNeighbors",
)


def measure_neighbors(objects: FieldObjects) -> dict[str, np.ndarray]:
    """``Neighbors_<feature>_Expanded`` for every object."""
    count = objects.count
    values = {name: np.zeros(count) for name in FEATURES}
    if count >= 2:
        grown = _grown(objects.labels)
        neighbours, outline, touching = _contacts(grown, count)
        values["NumberOfNeighbors"] = neighbours.astype(np.float64)
        values["PercentTouching"] = touching * 100 / outline
        values.update(_closest(objects))
    return {f"Neighbors_{name}_{SCALE}": value for name, value in values.items()}


def _grown(labels: np.ndarray) -> np.ndarray:
    """Every pixel takes the label of its nearest object pixel (scipy's choice on ties):
    compiled (:func:`.compiled.nearest_labels`, scipy's algorithm without its table of
    indices), else scipy's feature transform."""
    if compiled.AVAILABLE:
        return compiled.nearest_labels(np.ascontiguousarray(labels))
    nearest = ndi.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    # One flat index instead of a gather by two index arrays, made in scipy's own int32
    # array where it fits (a new 64-bit copy of a large field costs more than the gather).
    flat = nearest[0] if labels.size < 2**31 else nearest[0].astype(np.intp)
    flat *= labels.shape[1]
    flat += nearest[1]
    return labels.ravel()[flat].reshape(labels.shape)


def _contacts(grown: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each grown object's number of neighbours (other objects 4-adjacent to it), outline
    pixels and touching ones among them: one compiled pass (:func:`.compiled.grown_contacts`),
    else numpy's shifted comparisons.

    Every pixel of the grown image has a label, so a pixel "touches another object" exactly
    when an 8-neighbour differs; the outline is those pixels and the image edge."""
    if compiled.AVAILABLE:
        return compiled.grown_contacts(np.ascontiguousarray(grown), count)
    neighbours = np.bincount(np.concatenate(touching_pairs(grown)), minlength=count + 1)[1:]
    differs = np.zeros(grown.shape, bool)
    for here, there in (
        (np.s_[:, :-1], np.s_[:, 1:]),
        (np.s_[:-1, :], np.s_[1:, :]),
        (np.s_[:-1, :-1], np.s_[1:, 1:]),
        (np.s_[:-1, 1:], np.s_[1:, :-1]),
    ):
        step = grown[here] != grown[there]
        differs[here] |= step
        differs[there] |= step
    outline = differs.copy()
    outline[[0, -1], :] = True
    outline[:, [0, -1]] = True
    perimeters = np.bincount(grown[outline], minlength=count + 1)[1:]
    touches = np.bincount(grown[differs], minlength=count + 1)[1:]
    return neighbours, perimeters, touches


def _closest(objects: FieldObjects) -> dict[str, np.ndarray]:
    from scipy.spatial import cKDTree

    count = objects.count
    y = objects.mean(objects.rows.astype(np.float64))
    x = objects.mean(objects.cols.astype(np.float64))
    centres = np.column_stack([y, x])
    tree = cKDTree(centres)
    wanted = min(count, 3)  # the object itself, then the two closest
    k = min(count, 8)
    while True:
        _, found = tree.query(centres, k=k)
        # Distances as CellProfiler computes them; stable order: ties to the lower number.
        distance = np.sqrt((y[:, None] - y[found]) ** 2 + (x[:, None] - x[found]) ** 2)
        order = np.lexsort((found, distance), axis=1)
        found = np.take_along_axis(found, order, axis=1)
        distance = np.take_along_axis(distance, order, axis=1)
        # A tie at the last place found could hide an equal distance beyond it.
        if k == count or not np.any(distance[:, k - 1] <= distance[:, wanted - 1]):
            break
        k = min(count, 2 * k)
    first = found[:, 1]
    out = {"FirstClosestObjectNumber": first + 1.0}
    to_first = np.stack([x[first] - x, y[first] - y])
    out["FirstClosestDistance"] = np.sqrt((to_first**2).sum(axis=0))
    if count > 2:
        second = found[:, 2]
        to_second = np.stack([x[second] - x, y[second] - y])
        out["SecondClosestObjectNumber"] = second + 1.0
        out["SecondClosestDistance"] = np.sqrt((to_second**2).sum(axis=0))
        with np.errstate(divide="ignore", invalid="ignore"):
            cosine = (to_first * to_second).sum(axis=0) / np.sqrt(
                (to_first**2).sum(axis=0) * (to_second**2).sum(axis=0)
            )
            out["AngleBetweenNeighbors"] = np.arccos(cosine) * 180.0 / np.pi
    return out
