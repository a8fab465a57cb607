"""Minimum enclosing circles of objects' convex hulls, as centrosome gives them, bit for bit.

CellProfiler's Zernike features map an object's pixels into the unit disk of its minimum
enclosing circle (centrosome's ``minimum_enclosing_circle``), and a pixel on the circle
counts only if its distance rounds to at most 1: a circle one unit in the last place
larger or smaller takes in or leaves out the object's outermost pixels, and moves its
Zernike features by up to a percent. So the circle must be centrosome's to the last bit,
not another algorithm's circle to rounding.

centrosome finds it by Chrystal's method (1884), all objects together, one step per
round: an object keeps a segment ``S0 S1`` of its hull and looks, among its other hull
points in hull order, for the point ``V`` that sees the segment under the smallest angle.
If that angle is at least a right angle, the circle on the segment is the answer; if the
triangle ``S0 S1 V`` has no obtuse angle, its circumcircle is; else ``V`` replaces the end
whose angle is obtuse, which goes back among the points to look at. The point with the
smallest angle is the first of the round's sorted angles (numpy's ``argsort``, all
objects' angles in one array), which decides between equal angles.

Here the same rounds run with the same numbers: the cosines of a round come from one
compiled loop in numpy's operations (:func:`.compiled.hull_cosines`), and the angles,
their sort and every comparison are numpy's, on arrays of the same values in the same
order as centrosome's, so every choice, ties included, is the same. What goes is the
Python work per round (about 40 numpy calls over arrays rebuilt each round).
"""

from __future__ import annotations

import numpy as np

from . import compiled

RIGHT_ANGLE = np.pi / 2


def enclosing_circles(points: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(N, 2)`` (row, column) and radii of the minimum enclosing circles of N
    convex hulls: ``points`` their ``(label, row, column)`` rows, hull by hull, ``counts``
    the points of each (centrosome's ``convex_hull_ijv`` output).

    A hull of no points gives a NaN centre and radius 0, of one point that point and 0, of
    two their midpoint and half their distance.
    """
    count = len(counts)
    centres = np.zeros((count, 2))
    radii = np.zeros(count)
    if count == 0:
        return centres, radii
    counts = np.asarray(counts)
    starts = np.zeros(count, np.int64)
    starts[1:] = np.cumsum(counts[:-1])
    coordinates = points[:, 1:]
    centres[counts == 0] = np.nan
    one = counts == 1
    centres[one] = coordinates[starts[one]]
    two = counts == 2
    centres[two] = (coordinates[starts[two]] + coordinates[starts[two] + 1]) / 2
    offset = centres[two] - coordinates[starts[two]]
    radii[two] = np.sqrt(offset[:, 0] ** 2 + offset[:, 1] ** 2)

    owner = np.repeat(np.arange(count), counts)
    rank = np.arange(len(points)) - starts[owner]  # 0: S0, 1: S1, 2 and up: to look at
    first, second = starts.copy(), starts + 1
    active = counts > 2
    cosines = compiled.hull_cosines if compiled.AVAILABLE else _hull_cosines
    while active.any():
        vertices = np.flatnonzero(active[owner] & (rank >= 2))
        of_vertex = owner[vertices]
        at_s1, at_s0 = cosines(points, vertices, first[of_vertex], second[of_vertex])
        angle_s1 = np.abs(np.arccos(at_s1))
        angle_s0 = np.abs(np.arccos(at_s0))
        angle_v = np.pi - angle_s1 - angle_s0
        if not np.all(angle_v >= 0):  # centrosome asserts this too (NaN: points repeated)
            raise ValueError("a convex hull's angles are not all defined")
        # Each object's smallest angle: its first place in the sorted angles (the last
        # write of a reversed assignment wins).
        order = angle_v.argsort()
        smallest = np.full(count, -1)
        smallest[of_vertex[order[::-1]]] = order[::-1]
        seen = np.flatnonzero(smallest >= 0)
        best = smallest[seen]  # a vertex position for each object in ``seen``
        unseen = np.flatnonzero(active & (smallest < 0))  # no points to look at
        _finish_on_segment(unseen, coordinates, first, second, centres, radii, active)

        segment = angle_v[best] >= RIGHT_ANGLE
        _finish_on_segment(seen[segment], coordinates, first, second, centres, radii, active)
        best, seen = best[~segment], seen[~segment]

        acute = (
            (angle_s1[best] <= RIGHT_ANGLE)
            & (angle_s0[best] <= RIGHT_ANGLE)
            & (angle_v[best] <= RIGHT_ANGLE)
        )
        _finish_on_triangle(
            seen[acute], vertices[best[acute]], coordinates, first, second, centres, radii
        )
        active[seen[acute]] = False

        best, seen = best[~acute], seen[~acute]
        vertex = vertices[best]
        obtuse_s0 = angle_s0[best] > RIGHT_ANGLE
        for ends, new_rank, where in ((first, 0, obtuse_s0), (second, 1, ~obtuse_s0)):
            replaced = ends[seen[where]]
            rank[replaced] = rank[vertex[where]]  # the old end goes back among the points
            ends[seen[where]] = vertex[where]
            rank[vertex[where]] = new_rank
    return centres, radii


def _finish_on_segment(which, coordinates, first, second, centres, radii, active) -> None:
    """The circle on the segment S0 S1 (its midpoint, half its length) for the hulls
    numbered ``which``."""
    if len(which) == 0:
        return
    s0 = coordinates[first[which]].astype(float)
    s1 = coordinates[second[which]].astype(float)
    centres[which] = (s0 + s1) / 2
    radii[which] = np.sqrt(np.sum((s0 - s1) ** 2, 1)) / 2
    active[which] = False


def _finish_on_triangle(which, vertex, coordinates, first, second, centres, radii) -> None:
    """The circumcircle of S0 S1 V for the hulls numbered ``which``, in centrosome's formula
    (x: columns, y: rows); the radius is the centre's distance to S0."""
    if len(which) == 0:
        return
    s0 = coordinates[first[which]].astype(float)
    s1 = coordinates[second[which]].astype(float)
    v = coordinates[vertex].astype(float)
    row, col = 0, 1
    twice = 2 * (
        s0[:, col] * (s1[:, row] - v[:, row])
        + s1[:, col] * (v[:, row] - s0[:, row])
        + v[:, col] * (s0[:, row] - s1[:, row])
    )
    n0, n1, nv = np.sum(s0**2, 1), np.sum(s1**2, 1), np.sum(v**2, 1)
    x = (n0 * (s1[:, row] - v[:, row]) + n1 * (v[:, row] - s0[:, row])) + nv * (
        s0[:, row] - s1[:, row]
    )
    y = (n0 * (v[:, col] - s1[:, col]) + n1 * (s0[:, col] - v[:, col])) + nv * (
        s1[:, col] - s0[:, col]
    )
    centres[which, col] = x / twice
    centres[which, row] = y / twice
    radii[which] = np.sqrt(np.sum((s0 - centres[which]) ** 2, 1))


def _hull_cosines(points, vertices, first, second) -> tuple[np.ndarray, np.ndarray]:
    """:func:`.compiled.hull_cosines` in numpy."""
    v, s0, s1 = points[vertices, 1:], points[first, 1:], points[second, 1:]
    across = (s0 - s1).astype(float)
    from_s0 = (v - s0).astype(float)
    from_s1 = (v - s1).astype(float)
    length = np.sum(across**2, 1)
    at_s1 = np.sum(across * from_s1, 1) / np.sqrt(length * np.sum(from_s1**2, 1))
    at_s0 = np.sum(-across * from_s0, 1) / np.sqrt(length * np.sum(from_s0**2, 1))
    return at_s1, at_s0
