"""Scoring micronuclei: detection, the parent nucleus of each, and micronuclei per nucleus.

The micronucleus assay reads the fraction of cells with micronuclei and their count per cell,
so three things are scored, pooled over images:

- detection: precision, recall and F1 of one-to-one matches at IoU >= 0.3 and >= 0.5
  (:func:`~cellseg_hcs.training.metrics.matched_pairs`; micronuclei are a few pixels, where
  one pixel of outline moves the IoU a lot, hence the looser threshold too);
- parents: of the matched micronuclei whose true parent is an annotated nucleus, the share
  whose predicted parent is that nucleus (a predicted nucleus stands for the true nucleus it
  overlaps most);
- counts: over the true nuclei matched to a predicted nucleus (IoU >= 0.5), the share whose
  predicted number of micronuclei equals the true one, the mean absolute difference, and the
  share of nuclei with at least one micronucleus, true and predicted.

Truth comes as mnfinder ships it: ``nuclei_labels``, ``micronuclei_labels`` and
``micronuclei_parent`` (each micronucleus pixel holds its parent nucleus' id)
(:class:`MicronucleiFolders`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError, SettingError
from ..field.micronuclei import object_set_settings, set_foreground
from ..field.postprocess import drop_objects, split_objects
from ..field.relations import PARENT_RULES, distance_to, drop_enclosed, ring_share
from ..io.images import read_image
from .data.folders import ImageMaskFolder, as_instances, first_channel
from .metrics import matched_pairs

DETECTION_THRESHOLDS = (0.3, 0.5)
#: The micronuclei decodings :func:`tune_micronuclei` tries: every combination.
#: The settings :func:`~cellseg_hcs.field.postprocess.split_objects` reads: a grid's choices
#: of these make objects anew; the others only drop objects.
SPLIT_KEYS = ("foreground_threshold", "fill_holes", "seeds", "seed_threshold", "peak_height")
#: Settings the tuner does not try: it decodes without joining alike fragments (no image).
UNTRIED_KEYS = ("merge_height", "merge_contrast", "score")

MICRONUCLEI_GRID = {
    "class_threshold": (0.3, 0.4, 0.5),
    "foreground_threshold": (0.4, 0.5),
    "peak_height": (0.2, 0.3, 0.5),
    "min_size": (2, 3, 4, 6),
    "min_score": (0.0, 0.5),
    "max_nucleus_ring": (None, 0.5, 0.75),
}


@dataclass
class MicronucleusTruth:
    """One annotated image: nuclei, micronuclei, and each micronucleus' parent nucleus id
    (``parents[i]`` for micronucleus ``i + 1``; 0 where it has none)."""

    image: np.ndarray
    nuclei: np.ndarray
    micronuclei: np.ndarray
    parents: np.ndarray
    name: str = ""


def parents_from_map(micronuclei: np.ndarray, parent_map: np.ndarray) -> np.ndarray:
    """Each micronucleus' parent id: the most frequent nonzero value of ``parent_map`` under
    it (0 where there is none). ``parents[i]`` is micronucleus ``i + 1``'s.

    Examples
    --------
    >>> mn = np.array([[1, 1, 0, 2]]); parent = np.array([[7, 7, 0, 0]])
    >>> parents_from_map(mn, parent)
    array([7, 0])
    """
    micronuclei = np.asarray(micronuclei)
    count = int(micronuclei.max())
    out = np.zeros(count, dtype=np.int64)
    inside = (micronuclei > 0) & (np.asarray(parent_map) > 0)
    if not inside.any():
        return out
    pairs = np.stack([micronuclei[inside], np.asarray(parent_map)[inside]], axis=1)
    unique, votes = np.unique(pairs, axis=0, return_counts=True)
    # most votes last, so that each micronucleus' last write is its most frequent parent
    for (child, parent), _ in sorted(zip(map(tuple, unique), votes), key=lambda item: item[1]):
        out[child - 1] = parent
    return out


class MicronucleiFolders(Sequence):
    """Images with their nuclei, micronuclei and parent maps, in four folders paired by name.

    Parameters
    ----------
    images, nuclei, micronuclei, parents:
        The folders (``parents``: each micronucleus pixel holds its parent nucleus' id, as
        mnfinder's ``micronuclei_parent``).
    pattern:
        Glob for the image files to take, e.g. ``"validation__*"``.

    Examples
    --------
    >>> root = Path("mnfinder")  # doctest: +SKIP
    >>> data = MicronucleiFolders(root / "images", root / "nuclei_labels",
    ...     root / "micronuclei_labels", root / "micronuclei_parent", pattern="validation__*")
    ... # doctest: +SKIP
    """

    def __init__(
        self,
        images: str | Path,
        nuclei: str | Path,
        micronuclei: str | Path,
        parents: str | Path,
        *,
        pattern: str = "*",
    ) -> None:
        self.nuclei = ImageMaskFolder(images, nuclei, pattern=pattern, cache=False)
        self.micronuclei = ImageMaskFolder(images, micronuclei, pattern=pattern, cache=False)
        self.parents = ImageMaskFolder(images, parents, pattern=pattern, cache=False)
        for folder, data in ((micronuclei, self.micronuclei), (parents, self.parents)):
            if [p[0] for p in data.pairs] != [p[0] for p in self.nuclei.pairs]:
                raise InputError(f"{folder}: not every image with nuclei has a mask here.")

    def __len__(self) -> int:
        return len(self.nuclei)

    def __getitem__(self, index: int) -> MicronucleusTruth:
        image_path, nuclei_path = self.nuclei.pairs[index]
        micronuclei = _sequential(as_instances(read_image(self.micronuclei.pairs[index][1])))
        parent_map = np.asarray(read_image(self.parents.pairs[index][1]))
        return MicronucleusTruth(
            read_image(image_path),
            nuclei_ids(read_image(nuclei_path), parent_map),
            micronuclei,
            parents_from_map(micronuclei, parent_map),
            image_path.stem,
        )


def nuclei_ids(mask: np.ndarray, parent_map: np.ndarray) -> np.ndarray:
    """True nuclei with the ids their parent map names: the mask's own ids, never
    renumbered (a field with one nucleus, id 5, keeps 5). Only a mask with one value that
    no parent names is binary, and split into connected objects.

    Examples
    --------
    >>> mask = np.array([[0, 5, 5, 0]]); parent_map = np.array([[0, 0, 0, 5]])
    >>> nuclei_ids(mask, parent_map)
    array([[0, 5, 5, 0]], dtype=int32)
    >>> nuclei_ids(np.array([[255, 0, 255]]), np.zeros((1, 3)))
    array([[1, 0, 2]], dtype=int32)
    """
    mask = first_channel(mask)
    values = np.unique(mask[mask > 0])
    if values.size == 1 and not np.isin(values, np.asarray(parent_map)).any():
        return as_instances(mask)
    return mask.astype(np.int32)


def _sequential(labels: np.ndarray) -> np.ndarray:
    ids, inverse = np.unique(labels, return_inverse=True)
    offset = 0 if ids[0] == 0 else 1
    return (inverse.reshape(labels.shape) + offset).astype(np.int32)


@dataclass
class MicronucleusScores:
    """Micronucleus metrics pooled over images: :meth:`add` each image, read :meth:`summary`."""

    detection: dict[float, list[int]] = field(
        default_factory=lambda: {t: [0, 0, 0] for t in DETECTION_THRESHOLDS}
    )
    parent_right: int = 0
    parent_scored: int = 0
    nuclei_matched: int = 0
    count_equal: int = 0
    count_difference: int = 0
    nuclei_with_true: int = 0
    nuclei_with_predicted: int = 0

    def add(
        self,
        true_nuclei: np.ndarray,
        true_micronuclei: np.ndarray,
        true_parents: np.ndarray,
        nuclei: np.ndarray,
        micronuclei: np.ndarray,
        parents: np.ndarray,
        context: _ImageContext | None = None,
    ) -> None:
        """Score one image: true and predicted nuclei and micronuclei, and each set's parents
        (``parents[i]``: the nucleus number of micronucleus ``i + 1``, 0 for none).
        ``context``: what depends on the nuclei only, worked out once per image."""
        true_parents = np.asarray(true_parents, dtype=np.int64)
        parents = np.asarray(parents, dtype=np.int64)
        n_true = int(np.unique(true_micronuclei[true_micronuclei > 0]).size)
        n_pred = int(np.unique(micronuclei[micronuclei > 0]).size)
        for threshold in DETECTION_THRESHOLDS:
            true_ids, pred_ids, _ = matched_pairs(true_micronuclei, micronuclei, threshold)
            counts = self.detection[threshold]
            counts[0] += true_ids.size
            counts[1] += n_pred - true_ids.size
            counts[2] += n_true - true_ids.size
            if threshold == DETECTION_THRESHOLDS[0]:
                self._add_parents(
                    true_ids, pred_ids, true_parents, parents, true_nuclei, nuclei, context
                )
        self._add_counts(true_nuclei, true_parents, nuclei, parents, context)

    def _add_parents(
        self, true_ids, pred_ids, true_parents, parents, true_nuclei, nuclei, context=None
    ):
        if context is None:
            annotated = set(np.unique(true_nuclei[true_nuclei > 0]).tolist())
            stands_for = _most_overlapped(nuclei, true_nuclei)
        else:
            annotated, stands_for = context.annotated, context.stands_for
        for true_id, pred_id in zip(true_ids, pred_ids):
            truth = int(true_parents[true_id - 1])
            if truth not in annotated:
                continue
            predicted = int(parents[pred_id - 1]) if pred_id - 1 < parents.size else 0
            self.parent_scored += 1
            self.parent_right += int(predicted > 0 and stands_for.get(predicted) == truth)

    def _add_counts(self, true_nuclei, true_parents, nuclei, parents, context=None):
        if context is None:
            true_ids, pred_ids, _ = matched_pairs(true_nuclei, nuclei, 0.5)
        else:
            true_ids, pred_ids = context.nuclei_pairs
        if not true_ids.size:
            return
        true_counts = np.bincount(true_parents[true_parents > 0], minlength=true_ids.max() + 1)
        pred_counts = np.bincount(parents[parents > 0], minlength=pred_ids.max() + 1)
        true_n, pred_n = true_counts[true_ids], pred_counts[pred_ids]
        self.nuclei_matched += true_ids.size
        self.count_equal += int(np.count_nonzero(true_n == pred_n))
        self.count_difference += int(np.abs(true_n - pred_n).sum())
        self.nuclei_with_true += int(np.count_nonzero(true_n > 0))
        self.nuclei_with_predicted += int(np.count_nonzero(pred_n > 0))

    def merge(self, other: MicronucleusScores) -> None:
        """Add ``other``'s counts (images scored apart, pooled)."""
        for threshold, counts in other.detection.items():
            mine = self.detection.setdefault(threshold, [0, 0, 0])
            mine[:] = [a + b for a, b in zip(mine, counts)]
        for name in (f.name for f in fields(self) if f.name != "detection"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict[str, float]:
        """Precision, recall, F1 at each IoU threshold (``f1@0.3``...), ``parent_accuracy``,
        ``count_agreement``, ``count_mean_abs_difference``, ``fraction_with_micronuclei``
        (true) and ``fraction_with_micronuclei_predicted``."""
        out: dict[str, float] = {}
        for threshold, (tp, fp, fn) in self.detection.items():
            out[f"precision@{threshold}"] = tp / (tp + fp) if tp + fp else 1.0
            out[f"recall@{threshold}"] = tp / (tp + fn) if tp + fn else 1.0
            out[f"f1@{threshold}"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        tp, fp, fn = self.detection[DETECTION_THRESHOLDS[0]]
        out["n_true"], out["n_pred"] = float(tp + fn), float(tp + fp)
        out["parent_accuracy"] = (
            self.parent_right / self.parent_scored if self.parent_scored else float("nan")
        )
        out["parents_scored"] = float(self.parent_scored)
        matched = self.nuclei_matched
        out["nuclei_matched"] = float(matched)
        out["count_agreement"] = self.count_equal / matched if matched else float("nan")
        out["count_mean_abs_difference"] = (
            self.count_difference / matched if matched else float("nan")
        )
        out["fraction_with_micronuclei"] = self.nuclei_with_true / matched if matched else 0.0
        out["fraction_with_micronuclei_predicted"] = (
            self.nuclei_with_predicted / matched if matched else 0.0
        )
        return out


def _most_overlapped(nuclei: np.ndarray, true_nuclei: np.ndarray) -> dict[int, int]:
    """Each predicted nucleus -> the true nucleus it overlaps most (absent: none)."""
    both = (nuclei > 0) & (true_nuclei > 0)
    if not both.any():
        return {}
    pairs, counts = np.unique(
        np.stack([nuclei[both], true_nuclei[both]], axis=1), axis=0, return_counts=True
    )
    out: dict[int, int] = {}
    for (pred, truth), _ in sorted(zip(map(tuple, pairs), counts), key=lambda item: item[1]):
        out[int(pred)] = int(truth)
    return out


def classic_micronuclei(image: np.ndarray, nuclei: np.ndarray, sizes=(4, 400)) -> np.ndarray:
    """The classic baseline: Otsu foreground components outside the nuclei, ``sizes`` pixels.

    For scale only (issue #18 quotes it: F1 0.21-0.31 at IoU >= 0.3 on mnfinder's test split).
    """
    from skimage.filters import threshold_otsu

    plane = np.asarray(image, dtype=np.float64)
    plane = plane[0] if plane.ndim == 3 else plane
    mask = (plane > threshold_otsu(plane)) & (np.asarray(nuclei) == 0)
    components, count = ndi.label(mask)
    areas = np.bincount(components.ravel(), minlength=count + 1)
    keep = (areas >= sizes[0]) & (areas <= sizes[1])
    keep[0] = False
    numbers = np.zeros(count + 1, dtype=np.int32)
    numbers[keep] = np.arange(1, keep.sum() + 1)
    return numbers[components]


def tune_micronuclei(
    model,
    truths: Sequence[MicronucleusTruth],
    maps: Sequence[np.ndarray],
    nuclei: Sequence[np.ndarray],
    object_set: str = "Micronuclei",
    grid: dict[str, Sequence] | None = None,
) -> dict:
    """The decoding of a model's micronuclei with the best pooled F1 at IoU >= 0.3 (then
    parent accuracy), and then the parent rule with the best parent accuracy.

    Parameters
    ----------
    model:
        A model with a class routed to ``object_set``.
    truths:
        Annotated images (:class:`MicronucleiFolders`).
    maps, nuclei:
        The model's maps of each image and its nuclei there, as users get them (the
        recipe's ``maps`` with ``probabilities=True``, and its nuclei).
    grid:
        Settings to try, each a sequence (default :data:`MICRONUCLEI_GRID`).

    Returns ``{"settings": {...}, "scores": {...}, "parent_accuracy_by_rule": {...}}``; the
    settings go in ``model.info.object_postprocess[object_set]``. Holds every image's maps;
    :class:`MicronucleiTuner` takes one image at a time instead. A learned score
    (:mod:`cellseg_hcs.field.object_score`) is not part of the grid: fit it after the
    decoding is chosen (``benchmarks/micronuclei_score.py``).
    """
    tuner = MicronucleiTuner(model, object_set, grid)
    for truth, found, found_nuclei in zip(truths, maps, nuclei):
        tuner.add(truth, found, found_nuclei)
    return tuner.choose()


class MicronucleiTuner:
    """:func:`tune_micronuclei` one image at a time: :meth:`add` scores every decoding of the
    grid and every parent rule on one image (the maps can then be let go), :meth:`choose`
    picks from the pooled scores. Memory: one image's maps and the grid's counters.

    Examples
    --------
    >>> tuner = MicronucleiTuner(model)  # doctest: +SKIP
    >>> for truth in folders:  # doctest: +SKIP
    ...     result = pipeline.run(truth.image)
    ...     tuner.add(truth, result.maps, result.labels)
    >>> tuner.choose()["settings"]  # doctest: +SKIP
    """

    def __init__(
        self, model, object_set: str = "Micronuclei", grid: dict[str, Sequence] | None = None
    ) -> None:
        grid = dict(grid or MICRONUCLEI_GRID)
        untried = sorted(set(grid) & set(UNTRIED_KEYS))
        if untried:
            raise SettingError(
                f"the micronuclei tuner does not try {', '.join(untried)}: "
                "leave it out of the grid."
            )
        self.info = model.info
        self.object_set = object_set
        self.class_thresholds = grid.pop("class_threshold", (None,))
        self.split_keys = [k for k in SPLIT_KEYS if k in grid]
        self.drop_keys = [k for k in grid if k not in self.split_keys]
        self.grid = grid
        _, parent = object_set_settings(self.info, object_set)
        self.rule = parent.get("parent_rule", "boundary")
        self.distance = parent.get("parent_distance")
        #: choice (as a tuple of items) -> parent rule -> pooled scores
        self.scores: dict[tuple, dict[str, MicronucleusScores]] = {}

    def choices(self):
        """Every decoding of the grid, as (class threshold, split settings, drop settings)."""
        splits = list(itertools.product(*(self.grid[k] for k in self.split_keys)))
        drops = list(itertools.product(*(self.grid[k] for k in self.drop_keys)))
        for class_threshold in self.class_thresholds:
            for split_values in splits:
                split_choice = dict(zip(self.split_keys, split_values))
                if class_threshold is not None:
                    split_choice["class_threshold"] = class_threshold
                yield (
                    class_threshold,
                    split_choice,
                    [{**split_choice, **dict(zip(self.drop_keys, values))} for values in drops],
                )

    def add(self, truth: MicronucleusTruth, maps: np.ndarray, nuclei: np.ndarray) -> None:
        """Score every decoding and parent rule on one image: its truth, the model's maps
        there and its nuclei."""
        context = _ImageContext(truth, nuclei)
        seen: dict = {}
        made_for = foreground = None  # the set's foreground, once per class threshold
        for class_threshold, split_choice, choices in self.choices():
            if foreground is None or class_threshold != made_for:
                made_for = class_threshold
                foreground = set_foreground(
                    maps, self.info, self.object_set, nuclei, class_threshold
                )
            base, _ = object_set_settings(self.info, self.object_set, split_choice)
            found = split_objects(foreground, maps[1], base, nuclei > 0)
            kept = (None, None, None)  # the last choice's objects before the ring limit
            for choice in choices:
                settings, options = object_set_settings(self.info, self.object_set, choice)
                if kept[0] != settings:  # choices differing only in the ring limit share it
                    kept = (settings, drop_objects(found, foreground, settings), None)
                labels = kept[1]
                if options.get("max_nucleus_ring") is not None:
                    if kept[2] is None:
                        kept = (*kept[:2], ring_share(labels, nuclei))
                    labels = drop_enclosed(labels, nuclei, options["max_nucleus_ring"], kept[2])
                by_rule = self.scores.setdefault(tuple(choice.items()), {})
                for name, scores in self._score(context, labels, seen).items():
                    by_rule.setdefault(name, MicronucleusScores()).merge(scores)

    def _score(self, context: _ImageContext, labels: np.ndarray, seen: dict) -> dict:
        """This image's scores of ``labels`` under every parent rule (decodings that give
        the same objects are scored once)."""
        key = hashlib.blake2b(labels.astype(np.int32, copy=False).tobytes()).digest()
        if key not in seen:
            seen[key] = {}
            for name, rule in PARENT_RULES.items():
                seen[key][name] = MicronucleusScores()
                found = rule(labels, context.nuclei, self.distance, transform=context.transform)
                context.add(seen[key][name], labels, found)
        return seen[key]

    def choose(self) -> dict:
        """The decoding with the best pooled F1 at IoU >= 0.3 (then parent accuracy) under
        the model's parent rule, then the parent rule with the best parent accuracy there
        (ties to ``boundary``, the simpler one)."""
        if not self.scores:
            raise InputError("no annotated images to choose the micronuclei's decoding on.")

        def key(item):
            summary = item[1][self.rule].summary()
            return (round(summary["f1@0.3"], 4), _ordered(summary["parent_accuracy"]))

        best = max(self.scores.items(), key=key)  # the first of equals, as the grid's order
        chosen = dict(best[0])
        by_rule = {name: s.summary()["parent_accuracy"] for name, s in best[1].items()}
        chosen["parent_rule"] = best_parent_rule(by_rule)
        return {
            "settings": chosen,
            "scores": best[1][self.rule].summary(),
            "parent_accuracy_by_rule": by_rule,
        }


def best_parent_rule(accuracy_by_rule: dict[str, float]) -> str:
    """The parent rule with the highest share of right parents (ties, and rules that
    scored no parent, go to ``boundary``, the simplest).

    Examples
    --------
    >>> best_parent_rule({"boundary": 0.95, "centroid": 0.93, "vote": 0.95})
    'boundary'
    """
    return max(
        accuracy_by_rule,
        key=lambda name: (_ordered(accuracy_by_rule[name]), name == "boundary"),
    )


def _ordered(accuracy: float) -> float:
    """A parent accuracy to rank by: NaN (no parent scored) ranks below every number."""
    return -1.0 if np.isnan(accuracy) else accuracy


class _ImageContext:
    """What scoring one image's micronuclei needs from its truth and the model's nuclei,
    worked out once for every decoding tried on it."""

    def __init__(self, truth: MicronucleusTruth, nuclei: np.ndarray) -> None:
        self.truth = truth
        self.nuclei = nuclei
        self.annotated = set(np.unique(truth.nuclei[truth.nuclei > 0]).tolist())
        self.stands_for = _most_overlapped(nuclei, truth.nuclei)
        self.nuclei_pairs = matched_pairs(truth.nuclei, nuclei, 0.5)[:2]
        # the distance to the nuclei, for every decoding's parent rules
        self.transform = distance_to(nuclei) if np.any(nuclei) else None

    def add(self, scores: MicronucleusScores, micronuclei: np.ndarray, parents) -> None:
        truth = self.truth
        scores.add(
            truth.nuclei,
            truth.micronuclei,
            truth.parents,
            self.nuclei,
            micronuclei,
            parents,
            context=self,
        )
