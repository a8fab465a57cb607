"""Many greyscale reconstructions under one image, from one max-tree of the image.

Granularity reconstructs 16 seeds (the image eroded 1..16 times) by dilation under the same
image. A reconstruction by dilation of ``seed`` under ``mask`` gives a pixel ``p`` the highest
level ``h`` such that the connected part of ``{mask >= h}`` holding ``p`` also holds a seed
pixel of value ``h`` or more. The image's max-tree answers that for every seed at once:

- the tree is built once per image (Berger et al. 2007, "Effective component tree
  computation with application to pattern recognition in astronomical imaging": pixels in
  decreasing order, union-find). The pixels under a pixel ``a`` of the tree (``a`` and all
  its descendants) are a connected part of ``{mask >= mask[a]}`` holding the pixel, and every
  such part that holds ``p`` is the set under one of ``p``'s ancestors;
- for one seed, ``top[a]`` is the highest seed value under ``a`` (one pass, children before
  parents), and ``p`` takes the highest ``min(mask[a], top[a])`` over its ancestors ``a``
  (one pass, parents before children). Every such value is a level that qualifies, and the
  highest level that qualifies is among them, so it is the reconstruction, value for value,
  on any order of equal pixels.

Two linear passes for all seeds together (each node's seed values side by side) instead of
a sort and a queue per seed. The passes are compiled with numba (:mod:`.compiled`); without
it, callers use skimage's reconstruction.
"""

from __future__ import annotations

import numpy as np

from . import compiled
from .compiled import jit as _jit


@_jit
def _find(links, pixel):
    while links[pixel] != pixel:
        links[pixel] = links[links[pixel]]  # path halving
        pixel = links[pixel]
    return pixel


@_jit
def _build(order, height, width):
    """Each pixel's parent in the max-tree (4-connected) of the pixels in ``order``."""
    size = order.size
    parent = np.empty(size, np.int64)
    links = np.full(size, -1, np.int64)  # -1: not reached yet
    for index in range(size):
        pixel = order[index]
        parent[pixel] = pixel
        links[pixel] = pixel
        row = pixel // width
        column = pixel - row * width
        for step in range(4):
            if step == 0:
                if row == 0:
                    continue
                other = pixel - width
            elif step == 1:
                if row == height - 1:
                    continue
                other = pixel + width
            elif step == 2:
                if column == 0:
                    continue
                other = pixel - 1
            else:
                if column == width - 1:
                    continue
                other = pixel + 1
            if links[other] < 0:
                continue
            root = _find(links, other)
            if root != pixel:
                parent[root] = pixel
                links[root] = pixel
    return parent


@_jit
def _eroded_by_cross(image):
    """The minimum over each pixel and its 4-neighbours inside the image."""
    height, width = image.shape
    out = np.empty_like(image)
    for row in range(height):
        for column in range(width):
            value = image[row, column]
            if row > 0 and image[row - 1, column] < value:
                value = image[row - 1, column]
            if row < height - 1 and image[row + 1, column] < value:
                value = image[row + 1, column]
            if column > 0 and image[row, column - 1] < value:
                value = image[row, column - 1]
            if column < width - 1 and image[row, column + 1] < value:
                value = image[row, column + 1]
            out[row, column] = value
    return out


@_jit
def _openings(order, above, mask, image, out):
    """``out[p, k]``: ``image`` eroded ``k + 1`` times by a cross, reconstructed under the
    mask (whose passes' arrays are ``order``, ``above``, ``mask``), at flat pixel ``p``.
    The seeds are erosions of the image, not of earlier reconstructions, so every seed
    runs through the same two passes together: a node's values sit side by side."""
    size, count = out.shape
    seed = image
    for step in range(count):  # the seeds, by pixel, in ``out`` for now
        seed = _eroded_by_cross(seed)
        out[:, step] = seed.ravel()
    top = np.empty((size, count))
    for index in range(size):
        top[index] = out[order[index]]
    # max and min rather than comparisons and branches: the steps' loops vectorize.
    for index in range(size):  # children come before their parents
        parent = above[index]
        for step in range(count):
            top[parent, step] = max(top[parent, step], top[index, step])
    for index in range(size - 1, -1, -1):  # parents first, from the root
        parent = above[index]
        level = mask[index]
        if parent == index:
            for step in range(count):
                top[index, step] = min(level, top[index, step])
            continue
        for step in range(count):
            top[index, step] = max(min(level, top[index, step]), top[parent, step])
    for index in range(size):
        pixel = order[index]
        for step in range(count):
            out[pixel, step] = top[index, step]


class MaxTree:
    """The max-tree of ``mask`` (2-D), for reconstructions by dilation under it.

    Examples
    --------
    The peak two pixels wide goes in the first opening; the plateau three wide stays:

    >>> MaxTree(np.array([[1.0, 4.0, 4.0, 1.0, 3.0, 3.0, 3.0]])).openings(1)
    array([[1., 1., 1., 1., 3., 3., 3.]])
    """

    def __init__(self, mask: np.ndarray) -> None:
        if not compiled.AVAILABLE:
            raise RuntimeError("numba is not installed")
        self.mask = np.ascontiguousarray(mask, dtype=np.float64)
        flat = self.mask.ravel()
        self.order = np.argsort(-flat)  # any order of equal pixels gives the same
        parent = _build(self.order, *self.mask.shape)
        kind = np.int32 if flat.size < 2**31 else np.int64
        place = np.empty(flat.size, kind)
        place[self.order] = np.arange(flat.size, dtype=kind)
        self.above = place[parent[self.order]]
        self.order = self.order.astype(kind)
        self.sorted_mask = flat[self.order]

    def openings(self, count: int) -> np.ndarray:
        """``(count, pixels)``: the mask eroded 1..``count`` times by a cross (4-neighbours
        inside the image), each reconstructed under the mask: granularity's openings by
        reconstruction, flat, in one compiled loop (a view of a ``(pixels, count)``
        array, the layout a product with the pixels' weights wants)."""
        out = np.empty((self.mask.size, count))
        _openings(self.order, self.above, self.sorted_mask, self.mask, out)
        return out.T
