"""Running the network at another scale: objects of a given diameter brought to the model's.

A model works best on objects near the diameter it was trained around (its *working
diameter*, stored in the model file). When a user knows their objects' diameter, the field is
resampled so they come out at that size, the network runs on the resampled field, and its
maps are resampled back, so labels are always made at the image's own resolution. Halving a
field's size makes the network about 4x cheaper; doubling it lets very small nuclei be seen.

When the diameter is not known (``"auto"``, the default everywhere; the field recipe asks
:func:`auto_scale` in :meth:`~cellseg_hcs.field.pipeline.FieldPipeline.second_scale`), a first
pass at the image's own scale measures the objects' median diameter; only when that is far
from the working diameter (outside :data:`AUTO_RANGE` of it) does the network run again on
the resampled image. On the mnfinder validation images resampled 0.4x-2.5x
(``benchmarks/auto_diameter.py``), native-scale F1 per image fell as low as 0.80 (2.5x) and
0.89 (0.4x), and the second pass brought those images to 0.93-0.97; within the range it
gained nothing, so images like the training data cost one pass. Fewer than
:data:`AUTO_MIN_OBJECTS` objects are too few to measure: such images stay at their own scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..errors import SettingError

DEFAULT_WORKING_DIAMETER = 30.0
# Objects measured within this fraction of the working diameter are segmented as they are.
AUTO_RANGE = (0.75, 1.5)
# The most "auto" enlarges an image (9x the pixels): nuclei under ~10 px are below what the
# model was trained to see anyway.
AUTO_MAX_UPSCALE = 3.0
# ... and the most it shrinks one (objects up to 8x the working diameter).
AUTO_MIN_SCALE = 0.125
# A median of fewer objects (a speck of debris, one merged blob) decides nothing.
AUTO_MIN_OBJECTS = 8


def _areas(labels: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Pixel areas of the objects in one label image or several, pooled."""
    stack = [labels] if isinstance(labels, np.ndarray) else list(labels)
    areas = [np.bincount(np.asarray(one).ravel())[1:] for one in stack]
    pooled = np.concatenate(areas) if areas else np.zeros(0, np.int64)
    return pooled[pooled > 0]


def median_diameter(labels: np.ndarray | Sequence[np.ndarray]) -> float:
    """Median equivalent-circle diameter of the objects in a label image, or pooled over
    several (0 if none)."""
    areas = _areas(labels)
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if areas.size else 0.0


def auto_scale(
    labels: np.ndarray | Sequence[np.ndarray], working_diameter: float = DEFAULT_WORKING_DIAMETER
) -> tuple[float, float]:
    """``(scale, diameter)``: where to run the network again, from labels made at scale 1.

    ``diameter`` is the objects' median diameter in ``labels`` (one label image, or several
    pooled); ``scale`` is 1.0 when it is within :data:`AUTO_RANGE` of ``working_diameter``
    or there are fewer than :data:`AUTO_MIN_OBJECTS` objects, else the factor (rounded to
    0.001) that brings it to ``working_diameter``, within :data:`AUTO_MIN_SCALE` and
    :data:`AUTO_MAX_UPSCALE`.

    Examples
    --------
    >>> yy, xx = np.mgrid[:200, :200]
    >>> disks = sum(((yy - y) ** 2 + (xx - 40) ** 2 < 12 ** 2) * (n + 1)
    ...             for n, y in enumerate(range(20, 200, 25)))
    >>> auto_scale(disks, 60)  # eight disks about 24 px across, for a model of 60 px
    (2.544, 23.58...)
    """
    diameter = median_diameter(labels)
    if _areas(labels).size < AUTO_MIN_OBJECTS:
        return 1.0, diameter
    low, high = AUTO_RANGE
    if low * working_diameter <= diameter <= high * working_diameter:
        return 1.0, diameter
    scale = min(max(float(working_diameter) / diameter, AUTO_MIN_SCALE), AUTO_MAX_UPSCALE)
    return round(scale, 3), diameter


def scale_for(diameter: float | None, working_diameter: float = DEFAULT_WORKING_DIAMETER) -> float:
    """The resampling factor that brings objects of ``diameter`` pixels to the model's size.

    Examples
    --------
    >>> scale_for(60, 30), scale_for(None, 30)
    (0.5, 1.0)
    """
    if diameter is None:
        return 1.0
    if isinstance(diameter, str):
        raise SettingError(f"diameter must be a number of pixels here, not {diameter!r}.")
    if not diameter > 0:
        raise SettingError(f"diameter must be a positive number of pixels, not {diameter}.")
    return float(working_diameter) / float(diameter)


def predict_at_scale(runtime, field: np.ndarray, scale: float) -> np.ndarray:
    """Whole-field maps (K, H, W) of a CYX field, with the network run at ``scale``."""
    if abs(scale - 1.0) < 1e-3:
        return runtime.predict(field)
    height, width = field.shape[-2:]
    small = (max(int(round(height * scale)), 1), max(int(round(width * scale)), 1))
    resampled = _resize(field, small)
    maps = runtime.predict(resampled)
    return _resize(maps, (height, width))


def _resize(stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Linear resampling of each plane of a (C, H, W) stack to ``shape`` (pixel centres kept)."""
    height, width = stack.shape[-2:]
    if (height, width) == tuple(shape):
        return stack
    rows = (np.arange(shape[0]) + 0.5) * height / shape[0] - 0.5
    cols = (np.arange(shape[1]) + 0.5) * width / shape[1] - 0.5
    if shape[0] < height or shape[1] < width:  # shrinking: smooth first, as a camera would
        sigma = [max((height / shape[0] - 1) / 2, 0), max((width / shape[1] - 1) / 2, 0)]
        stack = np.stack([ndi.gaussian_filter(plane, sigma) for plane in stack])
    grid = np.meshgrid(rows, cols, indexing="ij")
    return np.stack(
        [ndi.map_coordinates(plane, grid, order=1, mode="nearest") for plane in stack]
    ).astype(np.float32, copy=False)
