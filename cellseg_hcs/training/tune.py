"""Choosing post-processing thresholds on validation images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import product

import numpy as np

from ..field.classes import object_foreground
from ..field.postprocess import PostprocessSettings, drop_objects, merge_alike, split_objects
from .data.base import Sample
from .evaluate import evaluate_model, own_objects
from .metrics import InstanceScores, match_instances

FOREGROUND_THRESHOLDS = (0.4, 0.5, 0.6)
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
PEAK_HEIGHTS = (0.2, 0.25, 0.3, 0.35, 0.4)
SIZE_FRACTIONS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3)
MIN_SCORES = (0.0, 0.7, 0.8, 0.85, 0.9)
#: Off, then alike fragments merged (see PostprocessSettings.merge_height); with peaks only.
MERGES = ({"merge_height": 0.0}, {"merge_height": 0.5, "merge_contrast": 0.05})


def seed_choices(
    seed: Sequence[float] = SEED_THRESHOLDS, peak: Sequence[float] = PEAK_HEIGHTS
) -> list[dict]:
    """The seed settings to try: each seed threshold, then each peak height."""
    return [{"seeds": "threshold", "seed_threshold": value} for value in seed] + [
        {"seeds": "peaks", "peak_height": value} for value in peak
    ]


def tune_postprocess(
    model,
    validation: Sequence[Sample],
    foreground: Sequence[float] = FOREGROUND_THRESHOLDS,
    seed: Sequence[float] = SEED_THRESHOLDS,
    size_fraction: Sequence[float] = SIZE_FRACTIONS,
    peak: Sequence[float] = PEAK_HEIGHTS,
    min_score: Sequence[float] = MIN_SCORES,
    merge: Sequence[dict] = MERGES,
) -> dict:
    """The post-processing settings with the best validation AP (then F1).

    Tries every foreground threshold, every way to seed objects (thresholds ``seed`` and
    peak heights ``peak``; an empty sequence leaves that way out, see
    :class:`~cellseg_hcs.field.postprocess.PostprocessSettings`), with peaks each ``merge``
    choice, every relative size filter and every minimum object score. Ties go to the
    better F1, then to the foreground threshold nearest 0.5, the weaker filters, the
    earlier seed choice and the earlier merge choice.

    The network runs once per image and objects are split once per foreground and seed
    choice; only the merging and the filters are repeated. Returns
    ``{"settings": {...}, "scores": {...}}`` with the full metrics of the chosen settings.
    """
    base = PostprocessSettings(**model.info.postprocess)
    maps = [model.predict_maps(sample.image) for sample in validation]
    inputs = [model.prepare(sample.image) for sample in validation]
    # A model with classes: its own objects' foreground (the others are decoded apart).
    foregrounds = [object_foreground(m, model.info) for m in maps]
    truths = [own_objects(sample, model.info) for sample in validation]  # not micronuclei
    best = None
    for fg, (order, seeds) in product(foreground, enumerate(seed_choices(seed, peak))):
        split = replace(base, foreground_threshold=fg, **seeds)
        objects = [split_objects(f, m[1], split) for f, m in zip(foregrounds, maps)]
        # Threshold seeds never join (PostprocessSettings): one pass, joining off.
        merges = (merge if seeds["seeds"] == "peaks" else ()) or ({"merge_height": 0.0},)
        for merge_order, merging in enumerate(merges):
            merged = replace(split, **merging)
            joined = [
                merge_alike(field_objects, m[1], x, merged)
                for m, x, field_objects in zip(maps, inputs, objects)
            ]
            for fraction, score in product(size_fraction, min_score):
                settings = replace(merged, min_size_fraction=fraction, min_score=score)
                scores = InstanceScores(
                    matches=[
                        match_instances(truth, drop_objects(field_objects, f, settings))
                        for truth, f, field_objects in zip(truths, foregrounds, joined)
                    ]
                ).matching_summary()
                key = (
                    round(scores["ap"], 4),
                    scores["f1"],
                    -abs(fg - 0.5),
                    -fraction,
                    -score,
                    -order,
                    -merge_order,
                )
                if best is None or key > best[0]:
                    best = (
                        key,
                        {
                            "foreground_threshold": fg,
                            **seeds,
                            **merging,
                            "min_size_fraction": fraction,
                            "min_score": score,
                        },
                    )
    settings = best[1]
    scores = evaluate_model(model, validation, maps=maps, **settings)
    return {"settings": settings, "scores": {k: float(np.float64(v)) for k, v in scores.items()}}
