"""Test-time flips: a tile's maps averaged over flips and rotations of the tile.

Every map a model predicts (foreground, distance to the background, class probabilities) is
a property of the objects, not of the image's orientation. A network only learns that
approximately (it is trained on randomly flipped and rotated crops); running it on several
flipped or rotated copies of a tile and averaging the maps, each turned back, gives maps
that are closer to orientation-free, for as many runs of the network. With all eight (the
flips and 90-degree rotations of a square) the averaged maps of a turned tile are exactly
the turned maps of the tile.

Whether they are more accurate depends on the model: on mnfinder's held-out images, 8 flips
raised the `micronuclei` model's micronucleus F1 (0.688 -> 0.716), while the `nuclei`
model's validation F1 fell (0.955 -> 0.945; its thresholds were tuned on maps of one
orientation). A model file names the flips it runs with (``ModelInfo.flips``).

``flips`` is how many of the eight are used, in this order: as is; flipped left-right;
flipped up-down; both (turned half a turn); then the same four of the transposed tile.
1 runs the network once; 2, 4 or 8 average that many.

Examples
--------
>>> import numpy as np
>>> def predict(batch):  # a "network" that sees orientation: the column index
...     return np.broadcast_to(np.arange(batch.shape[-1], dtype=np.float32), batch.shape)
>>> batch = np.zeros((1, 1, 1, 3), np.float32)
>>> predict_with_flips(predict, batch, 2)[0, 0, 0].tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import SettingError

FLIP_COUNTS = (1, 2, 4, 8)

# (transpose first, flip up-down, flip left-right): the eight symmetries of a square.
_SYMMETRIES = (
    (False, False, False),
    (False, False, True),
    (False, True, False),
    (False, True, True),
    (True, False, False),
    (True, False, True),
    (True, True, False),
    (True, True, True),
)


def check_flips(flips: object) -> int:
    """``flips`` as a number of symmetries, or one sentence saying what is allowed."""
    if isinstance(flips, bool) or flips not in FLIP_COUNTS:
        allowed = ", ".join(map(str, FLIP_COUNTS))
        raise SettingError(f"flips {flips!r} must be one of {allowed}.")
    return int(flips)


def _turn(batch: np.ndarray, transpose: bool, up_down: bool, left_right: bool) -> np.ndarray:
    """One symmetry applied to the last two axes (transpose first, then the flips)."""
    if transpose:
        batch = np.swapaxes(batch, -1, -2)
    if up_down:
        batch = batch[..., ::-1, :]
    if left_right:
        batch = batch[..., ::-1]
    return batch


def _turn_back(maps: np.ndarray, transpose: bool, up_down: bool, left_right: bool) -> np.ndarray:
    """The inverse of :func:`_turn` (the flips undone first, then the transpose)."""
    if left_right:
        maps = maps[..., ::-1]
    if up_down:
        maps = maps[..., ::-1, :]
    if transpose:
        maps = np.swapaxes(maps, -1, -2)
    return maps


def predict_with_flips(
    predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, flips: int
) -> np.ndarray:
    """The mean of ``predict``'s maps over the first ``flips`` symmetries of an NCHW batch,
    each turned back to the batch's orientation (``predict`` maps NCHW to NKHW)."""
    if flips == 1:
        return predict(batch)
    total: np.ndarray | None = None
    for symmetry in _SYMMETRIES[: check_flips(flips)]:
        turned = np.ascontiguousarray(_turn(batch, *symmetry))
        maps = _turn_back(np.asarray(predict(turned), dtype=np.float32), *symmetry)
        if total is None:
            total = maps.copy()
        else:
            total += maps
    return total / np.float32(flips)
