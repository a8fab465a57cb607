"""Overlapping tiles over a field and their blending back into whole-field maps.

Tiles have one fixed size (clipped to the field where the field is smaller), so they
batch together; overlaps are blended with a taper window that is 1 in a tile's middle
and falls towards its inner edges, but not at the field's own borders, so the weights
never vanish and a field covered by one tile comes back exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``, overlapping >= overlap.

    Examples
    --------
    >>> tile_starts(1000, 512, 64)
    [0, 488]
    >>> tile_starts(300, 512, 64)
    [0]
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile size), got {overlap} for tile {tile}")
    count = int(np.ceil((length - overlap) / (tile - overlap)))
    return np.round(np.linspace(0, length - tile, count)).astype(int).tolist()


def _ramp(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    weights = np.ones(size, dtype=np.float32)
    ramp_length = min(overlap, size // 2)
    if ramp_length > 0:
        # Raised cosine from near 0 to 1; strictly positive so weights never sum to zero.
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp_length) + 0.5) / ramp_length)
        if not at_start:
            weights[:ramp_length] = ramp
        if not at_end:
            weights[size - ramp_length :] = np.minimum(weights[size - ramp_length :], ramp[::-1])
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

    Examples
    --------
    >>> grid = TileGrid((700, 1300), tile_size=512, overlap=64)
    >>> len(grid.tiles), grid.tile_shape
    (6, (512, 512))
    """

    def __init__(self, shape: tuple[int, int], tile_size: int = 512, overlap: int = 64) -> None:
        self.shape = tuple(int(s) for s in shape[-2:])
        height, width = self.shape
        self.tile_shape = (min(tile_size, height), min(tile_size, width))
        self.overlap = overlap
        ys = tile_starts(height, tile_size, overlap)
        xs = tile_starts(width, tile_size, overlap)
        self.tiles = [Tile(y, x, *self.tile_shape) for y in ys for x in xs]

    def weights(self, tile: Tile) -> np.ndarray:
        height, width = self.shape
        wy = _ramp(tile.height, self.overlap, tile.y == 0, tile.y + tile.height >= height)
        wx = _ramp(tile.width, self.overlap, tile.x == 0, tile.x + tile.width >= width)
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
        self.total = np.zeros((channels, *grid.shape), dtype=np.float32)
        self.weight = np.zeros(grid.shape, dtype=np.float32)
        self.added = 0

    def add(self, tile: Tile, prediction: np.ndarray) -> None:
        weights = self.grid.weights(tile)
        region = tile.region
        self.total[(slice(None), *region)] += prediction * weights
        self.weight[region] += weights
        self.added += 1

    @property
    def complete(self) -> bool:
        return self.added == len(self.grid.tiles)

    def result(self) -> np.ndarray:
        return self.total / self.weight
