"""Pixel and instance metrics for segmentation.

Instance metrics follow two conventions, both common in the field:

* DSB2018: a prediction matches a true object when their IoU is above the threshold
  (matches are one-to-one for thresholds >= 0.5); ``AP@t = TP / (TP + FP + FN)`` and the
  AP reported is its mean over ``t = 0.50, 0.55, ..., 0.95``.
* COCO: predictions ranked by score, greedily matched, 101-point interpolated precision,
  averaged over the same thresholds, also split by object area (small < 32², large > 96²).

Counts are pooled over images by :class:`InstanceScores` (sum TP, FP, FN, then divide).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())
COCO_AREAS = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, np.inf)}


# ---------------------------------------------------------------- pixel metrics
def pixel_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 (= Dice) and IoU of two foreground masks (nonzero = foreground)."""
    pred = np.asarray(pred) > 0
    truth = np.asarray(truth) > 0
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return _pixel_scores(tp, fp, fn)


def _pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "dice": f1, "iou": iou}


def auroc(probability: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of a probability map against a foreground mask.

    Computed exactly from ranks (the Mann-Whitney U statistic), ties counted as half.
    """
    scores = np.asarray(probability, dtype=np.float64).ravel()
    positive = (np.asarray(truth) > 0).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# ---------------------------------------------------------------- instance matching
def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every true object against every predicted object.

    Returns ``(iou, truth_areas, pred_areas)``; ``iou[i, j]`` is for true object ``i + 1``
    in the relabelled order of ``np.unique`` and predicted object ``j + 1`` likewise.
    """
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    t = _ranks(truth)
    p = _ranks(pred)
    # Index 0 is background only if the image has background.
    t_offset = 1 if truth.min() == 0 else 0
    p_offset = 1 if pred.min() == 0 else 0
    n_t = t.max() + 1
    n_p = p.max() + 1
    overlap = np.bincount(t * n_p + p, minlength=n_t * n_p).reshape(n_t, n_p)
    truth_areas = overlap.sum(axis=1)[t_offset:]
    pred_areas = overlap.sum(axis=0)[p_offset:]
    inter = overlap[t_offset:, p_offset:].astype(np.float64)
    union = truth_areas[:, None] + pred_areas[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou, truth_areas, pred_areas


def _ranks(labels: np.ndarray) -> np.ndarray:
    """Each pixel's label as its rank among the image's distinct labels (flat), as
    ``np.unique(labels, return_inverse=True)`` gives, in linear time for label images
    (non-negative integers not much larger than the image)."""
    flat = labels.reshape(-1)
    if flat.size and flat.dtype.kind in "iu" and flat.min() >= 0 and flat.max() <= 4 * flat.size:
        present = np.bincount(flat) > 0
        rank = np.cumsum(present) - 1
        return rank[flat]
    return np.unique(flat, return_inverse=True)[1].reshape(-1)


@dataclass
class ImageMatch:
    """Matching counts of one image at each IoU threshold."""

    tp: dict[float, int]
    n_true: int
    n_pred: int
    matched_iou: list[float]


def match_instances(truth: np.ndarray, pred: np.ndarray) -> ImageMatch:
    """One-to-one matches (IoU > t) between true and predicted objects at every threshold."""
    iou, truth_areas, pred_areas = iou_matrix(truth, pred)
    best = iou.max(axis=1) if iou.size else np.zeros(len(truth_areas))
    tp = {t: int(np.count_nonzero(best > t)) for t in IOU_THRESHOLDS}
    return ImageMatch(
        tp=tp,
        n_true=len(truth_areas),
        n_pred=len(pred_areas),
        matched_iou=best[best > 0.5].tolist(),
    )


@dataclass
class InstanceScores:
    """Instance metrics pooled over images: add images with :meth:`add`, read :meth:`summary`.

    Examples
    --------
    >>> truth = np.zeros((4, 4), int); truth[:2, :2] = 1
    >>> scores = InstanceScores(); scores.add(truth, truth); scores.summary()["f1"]
    1.0
    """

    matches: list[ImageMatch] = field(default_factory=list)
    coco: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, truth: np.ndarray, pred: np.ndarray, scores: np.ndarray | None = None) -> None:
        """Score one image; ``scores[j]`` ranks predicted object ``j + 1`` for COCO AP."""
        self.matches.append(match_instances(truth, pred))
        iou, truth_areas, pred_areas = iou_matrix(truth, pred)
        if scores is None:
            scores = np.ones(len(pred_areas))
        self.coco.append((iou, truth_areas, pred_areas, np.asarray(scores, dtype=float)))

    def counts(self, threshold: float) -> tuple[int, int, int]:
        """Pooled (TP, FP, FN) at one IoU threshold."""
        tp = sum(m.tp[threshold] for m in self.matches)
        n_true = sum(m.n_true for m in self.matches)
        n_pred = sum(m.n_pred for m in self.matches)
        return tp, n_pred - tp, n_true - tp

    def summary(self) -> dict[str, float]:
        """F1/precision/recall at IoU 0.5, DSB AP per threshold and mean, COCO AP, AFNR."""
        out = self.matching_summary()
        out.update(coco_ap(self.coco))
        return out

    def matching_summary(self) -> dict[str, float]:
        """The metrics of :meth:`summary` that need only the matches (all but COCO AP).

        Cheap enough to score many post-processing settings on the same images: build
        ``InstanceScores(matches=[match_instances(truth, pred), ...])`` and call this.
        """
        out: dict[str, float] = {}
        tp, fp, fn = self.counts(0.5)
        out["n_true"] = float(tp + fn)
        out["n_pred"] = float(tp + fp)
        out["precision"] = tp / (tp + fp) if tp + fp else 1.0
        out["recall"] = tp / (tp + fn) if tp + fn else 1.0
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        aps, fnrs = [], []
        for t in IOU_THRESHOLDS:
            tp, fp, fn = self.counts(t)
            ap = tp / (tp + fp + fn) if tp + fp + fn else 1.0
            out[f"ap@{t:.2f}"] = ap
            aps.append(ap)
            fnrs.append(fn / (tp + fn) if tp + fn else 0.0)
        out["ap"] = float(np.mean(aps))
        out["afnr"] = float(np.mean(fnrs))
        matched = [v for m in self.matches for v in m.matched_iou]
        out["mean_matched_iou"] = float(np.mean(matched)) if matched else 0.0
        return out


# ---------------------------------------------------------------- COCO AP
def coco_ap(
    images: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """COCO mask AP, AP50, AP75 and AP by area from per-image (iou, areas, areas, scores).

    Follows the COCO evaluation: per threshold, predictions are taken in descending score
    and each matches the unmatched true object of highest IoU >= t; true objects outside
    an area range are ignored, as are unmatched predictions outside it; precision is
    made monotone and sampled at 101 recall points. A range with no true objects is NaN.
    """
    out = {}
    for name, (lo, hi) in {"all": (0, np.inf), **COCO_AREAS}.items():
        per_t = [_coco_ap_at(images, t, lo, hi) for t in IOU_THRESHOLDS]
        key = "coco_ap" if name == "all" else f"coco_ap_{name}"
        out[key] = float(np.mean(per_t)) if not np.isnan(per_t).any() else float("nan")
        if name == "all":
            out["coco_ap50"] = per_t[0]
            out["coco_ap75"] = per_t[IOU_THRESHOLDS.index(0.75)]
    return out


def _coco_ap_at(images: Iterable, threshold: float, lo: float, hi: float) -> float:
    all_scores, all_tp, n_true = [], [], 0
    for iou, truth_areas, pred_areas, scores in images:
        ignore_truth = (truth_areas < lo) | (truth_areas > hi)
        n_true += int((~ignore_truth).sum())
        order = np.argsort(-scores, kind="mergesort")
        taken = np.zeros(len(truth_areas), dtype=bool)
        for j in order:
            candidates = np.flatnonzero((iou[:, j] >= threshold) & ~taken)
            best = -1
            if candidates.size:
                # COCO prefers a true object that is not ignored, then the highest IoU.
                key = np.lexsort((-iou[candidates, j], ignore_truth[candidates]))
                best = int(candidates[key[0]])
            if best >= 0:
                taken[best] = True
                if ignore_truth[best]:
                    continue
                all_scores.append(scores[j])
                all_tp.append(True)
            elif lo <= pred_areas[j] <= hi:
                all_scores.append(scores[j])
                all_tp.append(False)
    if n_true == 0:
        return float("nan")
    if not all_scores:
        return 0.0
    order = np.argsort(-np.asarray(all_scores), kind="mergesort")
    tp = np.asarray(all_tp)[order]
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(~tp)
    recall = tp_cum / n_true
    precision = tp_cum / (tp_cum + fp_cum)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def evaluate_pairs(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """Pooled instance metrics and pixel metrics over (truth, prediction) label pairs."""
    scores = InstanceScores()
    tp = fp = fn = 0
    for truth, pred in pairs:
        scores.add(truth, pred)
        t, p = np.asarray(truth) > 0, np.asarray(pred) > 0
        tp += int(np.count_nonzero(t & p))
        fp += int(np.count_nonzero(p & ~t))
        fn += int(np.count_nonzero(t & ~p))
    out = scores.summary()
    out.update({f"pixel_{k}": v for k, v in _pixel_scores(tp, fp, fn).items()})
    return out


def matched_pairs(
    truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matches of true and predicted objects with IoU >= ``threshold``.

    Below IoU 0.5 an object can overlap several others that far, so the pairs are chosen to
    maximise the summed IoU (the Hungarian assignment). Returns the matched true ids, their
    predicted ids (label values, not indices) and the pairs' IoU.

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 2, 2]]); pred = np.array([[3, 3, 3, 0, 4]])
    >>> matched_pairs(truth, pred, 0.3)[:2]
    (array([1, 2]), array([3, 4]))
    """
    from scipy.optimize import linear_sum_assignment

    truth, pred = np.asarray(truth), np.asarray(pred)
    true_ids = np.unique(truth[truth > 0])
    pred_ids = np.unique(pred[pred > 0])
    empty = np.zeros(0, dtype=np.int64)
    if not true_ids.size or not pred_ids.size:
        return empty, empty, np.zeros(0)
    # Numbered 1..n, so that index i of iou_matrix's rows is true_ids[i] (columns likewise).
    iou, _, _ = iou_matrix(
        (np.searchsorted(true_ids, truth) + 1) * (truth > 0),
        (np.searchsorted(pred_ids, pred) + 1) * (pred > 0),
    )
    weight = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(-weight)
    keep = weight[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    return true_ids[rows].astype(np.int64), pred_ids[cols].astype(np.int64), iou[rows, cols]
