"""A cell stain's foreground, thresholded as CellProfiler 4.2.8's Threshold settings do.

IdentifySecondaryObjects thresholds its image with CellProfiler's Threshold module; its
defaults there are a *global* *Minimum Cross-Entropy* (Li) threshold, no smoothing, a
correction factor of 1 and bounds 0 and 1, on the image as CellProfiler loads it (integers
divided by their type's maximum). These functions compute that threshold and mask from the
same settings, so that cells grown here equal CellProfiler's.

Examples
--------
>>> image = np.zeros((8, 8)); image[2:6, 2:6] = 0.8
>>> mask, value = foreground(image, ThresholdChoice())
>>> int(mask.sum()), round(value, 2)
(16, 0.2)
"""

from __future__ import annotations

from collections.abc import Callable

import centrosome.smooth
import centrosome.threshold
import numpy as np
import skimage.filters
from scipy import ndimage as ndi

from ..settings import ThresholdChoice


def _minimum_cross_entropy(pixels: np.ndarray, choice: ThresholdChoice) -> float:
    # CellProfiler's tolerance: half the smallest step between grey values, at least half a
    # 16-bit step, so an 8-bit image converges where CellProfiler's does.
    steps = np.diff(np.unique(pixels))
    tolerance = max(float(np.min(steps)) / 2, 0.5 / 65536)
    return float(skimage.filters.threshold_li(pixels, tolerance=tolerance))


def _otsu(pixels: np.ndarray, choice: ThresholdChoice) -> float:
    if choice.otsu_classes == 2:
        return float(skimage.filters.threshold_otsu(pixels))
    both = skimage.filters.threshold_multiotsu(pixels, nbins=128)
    return float(both[0] if choice.middle_class == "foreground" else both[1])


def _manual(pixels: np.ndarray, choice: ThresholdChoice) -> float:
    return float(choice.manual)


THRESHOLD_METHODS: dict[str, Callable[[np.ndarray, ThresholdChoice], float]] = {
    "minimum_cross_entropy": _minimum_cross_entropy,
    "otsu": _otsu,
    "manual": _manual,
}
"""Global threshold methods by name (CellProfiler's Minimum Cross-Entropy, Otsu, Manual)."""


def threshold_value(image: np.ndarray, choice: ThresholdChoice) -> float:
    """The corrected global threshold of ``image`` (float, CellProfiler-scaled pixels)."""
    pixels = np.asarray(image, dtype=np.float64)
    if choice.method == "manual":
        return float(choice.manual)
    transform = None
    if choice.log_transform:
        pixels, transform = centrosome.threshold.log_transform(pixels)
    values = pixels.ravel()
    if values.size == 0:
        value = 0.0
    elif np.all(values == values[0]):
        value = float(values[0])
    else:
        value = THRESHOLD_METHODS[choice.method](values, choice)
    if transform is not None:
        value = float(centrosome.threshold.inverse_log_transform(value, transform))
    value *= choice.correction_factor
    low, high = choice.bounds
    return float(min(max(value, low), high))


def foreground(image: np.ndarray, choice: ThresholdChoice) -> tuple[np.ndarray, float]:
    """Pixels at or above the threshold (after the optional smoothing), and the threshold."""
    image = np.asarray(image, dtype=np.float64)
    value = threshold_value(image, choice)
    if choice.smoothing_scale == 0:
        return image >= value, value
    # Half of the Gaussian's weight falls within the smoothing diameter (CellProfiler's sigma).
    sigma = choice.smoothing_scale / 0.6744 / 2.0
    smoothed = centrosome.smooth.smooth_with_function_and_mask(
        image,
        lambda x: ndi.gaussian_filter(x, sigma, mode="constant", cval=0),
        np.ones(image.shape, bool),
    )
    return smoothed >= value, value
