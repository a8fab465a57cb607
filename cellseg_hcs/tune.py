"""Choosing post-processing thresholds on validation images."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np

from .data.base import Sample
from .evaluate import evaluate_model

FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6)
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
PEAK_HEIGHTS = (0.2, 0.25, 0.3, 0.35, 0.4)
SIZE_FRACTIONS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3)


def seed_choices(seed: Sequence[float] = SEED_THRESHOLDS,
                 peak: Sequence[float] = PEAK_HEIGHTS) -> list[dict]:
    """The seed settings to try: each seed threshold, then each peak height."""
    return ([{"seeds": "threshold", "seed_threshold": value} for value in seed]
            + [{"seeds": "peaks", "peak_height": value} for value in peak])


def tune_postprocess(model, validation: Sequence[Sample],
                     foreground: Sequence[float] = FOREGROUND_THRESHOLDS,
                     seed: Sequence[float] = SEED_THRESHOLDS,
                     size_fraction: Sequence[float] = SIZE_FRACTIONS,
                     peak: Sequence[float] = PEAK_HEIGHTS) -> dict:
    """The foreground threshold, seeds and relative size filter with the best validation AP.

    Seeds are tried both ways (:class:`~cellseg_hcs.postprocess.PostprocessSettings`):
    thresholds ``seed`` and peak heights ``peak`` (an empty sequence leaves that way out).
    Ties go to the better F1, then to the foreground threshold nearest 0.5, the smaller
    filter, and the earlier seed choice.

    The network runs once per image; only the post-processing is repeated.
    Returns ``{"settings": {...}, "scores": {...}}``.
    """
    maps = [model.predict_maps(sample.image) for sample in validation]
    choices = seed_choices(seed, peak)
    best = None
    for fg, (order, seeds), fraction in product(foreground, enumerate(choices), size_fraction):
        settings = {"foreground_threshold": fg, **seeds, "min_size_fraction": fraction}
        scores = evaluate_model(model, validation, maps=maps, **settings)
        key = (round(scores["ap"], 4), scores["f1"], -abs(fg - 0.5), -fraction, -order)
        if best is None or key > best[0]:
            best = (key, settings, scores)
    _, settings, scores = best
    return {"settings": settings, "scores": {k: float(np.float64(v)) for k, v in scores.items()}}
