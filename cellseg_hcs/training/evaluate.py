"""Scoring a model or a folder of predictions against true labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.images import read_image
from .data.base import Sample
from .data.folders import ImageMaskFolder, as_instances
from .metrics import InstanceScores, _pixel_scores, auroc


def evaluate_model(
    model, dataset: Sequence[Sample], *, maps: list | None = None, **settings
) -> dict[str, float]:
    """Pooled instance and pixel metrics of a model on an annotated dataset.

    ``maps`` may hold already predicted maps (one per sample) to score other
    post-processing ``settings`` without running the network again.
    """
    scores = InstanceScores()
    tp = fp = fn = 0
    for index, sample in enumerate(dataset):
        field_maps = maps[index] if maps is not None else model.predict_maps(sample.image)
        labels = model.labels_from_maps(field_maps, model.prepare(sample.image), **settings)
        object_scores = _object_scores(labels, field_maps[0])
        scores.add(sample.labels, labels, object_scores)
        truth, pred = sample.labels > 0, labels > 0
        tp += int(np.count_nonzero(truth & pred))
        fp += int(np.count_nonzero(pred & ~truth))
        fn += int(np.count_nonzero(truth & ~pred))
    out = scores.summary()
    out.update({f"pixel_{k}": v for k, v in _pixel_scores(tp, fp, fn).items()})
    return out


def _object_scores(labels: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Mean foreground probability of each object, in label order (the COCO ranking score)."""
    ids = np.unique(labels[labels > 0])
    if ids.size == 0:
        return np.zeros(0)
    sums = np.bincount(labels.ravel(), weights=foreground.ravel(), minlength=ids.max() + 1)
    counts = np.bincount(labels.ravel(), minlength=ids.max() + 1)
    return sums[ids] / counts[ids]


def evaluate_folders(
    pred: str | Path, truth: str | Path, probabilities: str | Path | None = None
) -> dict[str, float]:
    """Metrics of predicted label images in ``pred`` against true masks in ``truth``.

    Files pair by name as in :class:`~cellseg_hcs.training.data.ImageMaskFolder` (a prediction
    ``x_labels.tif`` pairs with truth ``x.tif``). With a folder of foreground probability
    maps (same names), the pixel AuROC is added.
    """
    try:
        pairs = ImageMaskFolder(truth, pred, cache=False)
    except InputError as exc:
        if not (Path(truth).is_dir() and Path(pred).is_dir()):
            raise
        raise InputError(
            f"no prediction in {pred} pairs with a true mask in {truth} (a "
            "prediction x_labels.tif or x.tif pairs with truth x.tif)."
        ) from exc
    if pairs.unmatched:
        raise InputError(f"{pred}: no prediction for {pairs.unmatched[0]} in {truth}.")
    scores = InstanceScores()
    tp = fp = fn = 0
    aurocs = []
    for truth_path, pred_path in pairs.pairs:
        true_labels = as_instances(read_image(truth_path))
        pred_labels = np.asarray(read_image(pred_path))
        scores.add(true_labels, pred_labels)
        t, p = true_labels > 0, pred_labels > 0
        tp += int(np.count_nonzero(t & p))
        fp += int(np.count_nonzero(p & ~t))
        fn += int(np.count_nonzero(t & ~p))
        if probabilities is not None:
            prob_path = Path(probabilities) / pred_path.name
            aurocs.append(auroc(read_image(prob_path), true_labels))
    out = scores.summary()
    out.update({f"pixel_{k}": v for k, v in _pixel_scores(tp, fp, fn).items()})
    if aurocs:
        out["pixel_auroc"] = float(np.nanmean(aurocs))
    out["images"] = float(len(pairs))
    return out
