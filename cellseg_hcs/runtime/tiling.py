"""Overlapping tiles over a field and their blending back into whole-field maps.

Tiles of one field all have one size, so they batch together (also with the tiles of other
fields of the same shape). The size is the smallest that covers the field with as many
tiles as ``tile_size`` would need, so little work goes into overlap beyond the asked one.
Overlaps are blended with a taper window: at a tile's inner edges the outermost quarter of
the overlap gets weight 0 (those pixels saw the least context), then a raised cosine rises
to 1; at the field's own borders the weight stays 1. Two neighbouring windows sum to 1 over
an overlap of exactly ``overlap`` pixels, every pixel gets a positive total weight, and a
field covered by one tile comes back exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``, overlapping >= overlap.

    Examples
    --------
    >>> tile_starts(900, 512, 64)
    [0, 388]
    >>> tile_starts(1000, 512, 64)
    [0, 244, 488]
    >>> tile_starts(300, 512, 64)
    [0]
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile size), got {overlap} for tile {tile}")
    count = int(np.ceil((length - overlap) / (tile - overlap)))
    return np.round(np.linspace(0, length - tile, count)).astype(int).tolist()


def tile_side(length: int, tile_size: int, overlap: int, multiple: int = 1) -> int:
    """The tile side for one axis: as small as covers ``length`` with the fewest tiles.

    The tile count is that of ``tile_size``; the side is then shrunk to the least that still
    overlaps by ``overlap``, rounded up to ``multiple`` (never above ``tile_size``, nor above
    ``length``: a field smaller than a tile is one tile of its own size).

    Examples
    --------
    >>> tile_side(2160, 1024, 64), tile_side(2160, 1024, 64, multiple=32)
    (763, 768)
    >>> tile_side(300, 512, 64)
    300
    """
    if length <= tile_size:
        return length
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile size), got {overlap} for {tile_size}")
    count = int(np.ceil((length - overlap) / (tile_size - overlap)))
    side = -(-(length + (count - 1) * overlap) // count)
    side = -(-side // multiple) * multiple
    return int(min(side, tile_size))


def taper(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """Blending weights along one axis of a tile (see the module docstring).

    Examples
    --------
    >>> np.round(taper(8, 4, at_start=False, at_end=True), 2)
    array([0.  , 0.15, 0.85, 1.  , 1.  , 1.  , 1.  , 1.  ], dtype=float32)
    """
    weights = np.ones(size, dtype=np.float32)
    overlap = min(overlap, size)  # ramps from both ends may meet: the minimum of the two holds
    if overlap <= 0:
        return weights
    dead = overlap // 4
    rise = overlap - 2 * dead
    # Raised cosine over the middle of the overlap; it and its mirror image sum to 1.
    ramp = np.zeros(overlap, dtype=np.float32)
    ramp[dead : dead + rise] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(rise) + 0.5) / rise)
    ramp[dead + rise :] = 1
    if not at_start:
        weights[:overlap] = ramp
    if not at_end:
        weights[size - overlap :] = np.minimum(weights[size - overlap :], ramp[::-1])
    return weights


@dataclass(frozen=True)
class Tile:
    """Where one tile sits in its field."""

    y: int
    x: int
    height: int
    width: int

    @property
    def region(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


class TileGrid:
    """The tiles of one field, and a blender that puts their predictions back together.

    Parameters
    ----------
    shape:
        The field's shape (the last two entries are its height and width).
    tile_size, overlap:
        Largest tile side, and the least overlap between neighbouring tiles.
    multiple:
        Tile sides are rounded up to this (the network's own multiple) where the field
        allows it, so tiles need no padding.

    Examples
    --------
    >>> grid = TileGrid((700, 1300), tile_size=512, overlap=64)
    >>> len(grid.tiles), grid.tile_shape
    (6, (382, 476))
    """

    def __init__(
        self, shape: tuple[int, ...], tile_size: int = 512, overlap: int = 64, multiple: int = 1
    ) -> None:
        self.shape = tuple(int(s) for s in shape[-2:])
        height, width = self.shape
        self.tile_shape = (
            tile_side(height, tile_size, overlap, multiple),
            tile_side(width, tile_size, overlap, multiple),
        )
        self.overlap = overlap
        ys = tile_starts(height, self.tile_shape[0], overlap)
        xs = tile_starts(width, self.tile_shape[1], overlap)
        self.tiles = [Tile(y, x, *self.tile_shape) for y in ys for x in xs]

    def weights(self, tile: Tile) -> np.ndarray:
        height, width = self.shape
        wy = taper(tile.height, self.overlap, tile.y == 0, tile.y + tile.height >= height)
        wx = taper(tile.width, self.overlap, tile.x == 0, tile.x + tile.width >= width)
        return wy[:, None] * wx[None, :]

    def cut(self, field: np.ndarray) -> Iterator[np.ndarray]:
        """The tiles of a CYX field, in the order of :attr:`tiles`."""
        for tile in self.tiles:
            yield field[(..., *tile.region)]

    def blender(self, channels: int) -> Blender:
        return Blender(self, channels)


class Blender:
    """Accumulates weighted tile predictions; :meth:`result` divides by the total weight."""

    def __init__(self, grid: TileGrid, channels: int) -> None:
        self.grid = grid
        self.single = len(grid.tiles) == 1
        self.total = None if self.single else np.zeros((channels, *grid.shape), np.float32)
        self.weight = None if self.single else np.zeros(grid.shape, dtype=np.float32)
        self.added = 0

    def add(self, tile: Tile, prediction: np.ndarray) -> None:
        self.added += 1
        if self.single:  # one tile is the whole field: no copy, no arithmetic
            self.total = np.asarray(prediction, dtype=np.float32)
            return
        weights = self.grid.weights(tile)
        region = tile.region
        self.total[(slice(None), *region)] += prediction * weights
        self.weight[region] += weights

    @property
    def complete(self) -> bool:
        return self.added == len(self.grid.tiles)

    def result(self) -> np.ndarray:
        if self.single:
            return self.total
        return self.total / self.weight
