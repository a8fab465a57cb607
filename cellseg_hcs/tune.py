"""Choosing post-processing thresholds on validation images."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np

from .data.base import Sample
from .evaluate import evaluate_model

FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6)
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SIZE_FRACTIONS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3)


def tune_postprocess(model, validation: Sequence[Sample],
                     foreground: Sequence[float] = FOREGROUND_THRESHOLDS,
                     seed: Sequence[float] = SEED_THRESHOLDS,
                     size_fraction: Sequence[float] = SIZE_FRACTIONS) -> dict:
    """The foreground/seed thresholds and relative size filter with the best validation AP.

    Ties go to the better F1, then to the thresholds nearest 0.5 and the smaller filter.

    The network runs once per image; only the post-processing is repeated.
    Returns ``{"settings": {...}, "scores": {...}}``.
    """
    maps = [model.predict_maps(sample.image) for sample in validation]
    best = None
    for fg, sd, fraction in product(foreground, seed, size_fraction):
        settings = {"foreground_threshold": fg, "seed_threshold": sd,
                    "min_size_fraction": fraction}
        scores = evaluate_model(model, validation, maps=maps, **settings)
        key = (round(scores["ap"], 4), scores["f1"], -abs(fg - 0.5) - abs(sd - 0.5), -fraction)
        if best is None or key > best[0]:
            best = (key, settings, scores)
    _, settings, scores = best
    return {"settings": settings, "scores": {k: float(np.float64(v)) for k, v in scores.items()}}
