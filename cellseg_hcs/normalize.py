"""Intensity normalization shared by training and inference."""

from __future__ import annotations

import numpy as np


def percentile_normalize(
    image: np.ndarray, low: float = 1.0, high: float = 99.8, *, eps: float = 1e-6
) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of ``image`` to 0 and 1 (float32, not clipped).

    Works the same on uint8, uint16 and float images, so the model never sees bit depth.
    A constant image maps to all zeros.

    Examples
    --------
    >>> percentile_normalize(np.arange(101, dtype=np.uint16), 0, 100)[[0, 50, 100]]
    array([0. , 0.5, 1. ], dtype=float32)
    """
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)] if not np.isfinite(image).all() else image
    if finite.size == 0:
        return np.zeros_like(image)
    # Percentiles on a strided subsample: identical in expectation, much cheaper on 5k fields.
    sample = finite.ravel()
    if sample.size > 1_000_000:
        sample = sample[:: sample.size // 1_000_000]
    lo, hi = np.percentile(sample, [low, high])
    if hi - lo < eps:
        return np.zeros_like(image)
    out = (image - np.float32(lo)) / np.float32(hi - lo)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)
