"""Scoring a model or a folder of predictions against true labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..field.micronuclei import decode_objects
from ..field.relations import nearest_parents
from ..io.images import read_image
from .data.base import Sample
from .data.folders import ImageMaskFolder, as_instances
from .metrics import InstanceScores, _pixel_scores, auroc, matched_pairs


def evaluate_model(
    model,
    dataset: Sequence[Sample],
    *,
    maps: list | None = None,
    predict_options: dict | None = None,
    **settings,
) -> dict[str, float]:
    """Pooled instance and pixel metrics of a model on an annotated dataset.

    ``maps`` may hold already predicted maps (one per sample) to score other
    post-processing ``settings`` without running the network again; ``predict_options``
    the ``backend`` and ``device`` the network runs on (default: the automatic choice). A model
    with classes is scored on its own objects (``Nuclei``) against the samples' labels (where
    the samples have classes, only the true objects of the classes that are the model's own
    objects: a true micronucleus is not a missed nucleus); per-class metrics are then added
    (:class:`ClassScores`), every sample counted, those with no true object too.
    """
    scores = InstanceScores()
    per_class = None
    if model.info.classes and any(sample.classes for sample in dataset):
        per_class = ClassScores(model.info.classes)
    tp = fp = fn = 0
    for index, sample in enumerate(dataset):
        field_maps = (
            maps[index]
            if maps is not None
            else model.predict_maps(sample.image, **(predict_options or {}))
        )
        prepared = model.prepare(sample.image)
        labels = model.labels_from_maps(field_maps, prepared, **settings)
        own = own_objects(sample, model.info)
        if per_class is not None:
            info = model.info
            decoded = decode_objects(field_maps, prepared, info, {info.object_name: settings})
            per_class.add(sample.labels, sample.classes or {}, decoded)
        object_scores = _object_scores(labels, field_maps[0])
        scores.add(own, labels, object_scores)
        truth, pred = own > 0, labels > 0
        tp += int(np.count_nonzero(truth & pred))
        fp += int(np.count_nonzero(pred & ~truth))
        fn += int(np.count_nonzero(truth & ~pred))
    out = scores.summary()
    out.update({f"pixel_{k}": v for k, v in _pixel_scores(tp, fp, fn).items()})
    if per_class is not None:
        out.update(per_class.summary())
    return out


def own_objects(sample: Sample, info) -> np.ndarray:
    """A sample's true objects that a model's own objects are scored against: all of them,
    or, where the sample has classes, those of the classes the model does not decode as
    an object set of their own (``ModelInfo.class_objects``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> info = SimpleNamespace(object_name="Nuclei", class_objects={"mn": "Micronuclei"})
    >>> sample = Sample(np.zeros((1, 3)), np.array([[1, 2, 0]]), classes={1: "n", 2: "mn"})
    >>> own_objects(sample, info)
    array([[1, 0, 0]])
    """
    routed = {c for c, objects in info.class_objects.items() if objects != info.object_name}
    labels = np.asarray(sample.labels)
    if not sample.classes or not routed:
        return labels
    others = [number for number, name in sample.classes.items() if name in routed]
    return np.where(np.isin(labels, others), 0, labels)


class ClassScores:
    """Per-class instance metrics of a model with classes, pooled over images.

    For each class, the true objects of that class are matched against the predicted
    objects of every object set whose most probable class it is (``<class>_f1``,
    ``<class>_precision``, ``<class>_recall``, ``<class>_ap``); ``class_accuracy`` is the
    share of true objects matched at IoU 0.5 (whatever the class) that got their true class.
    A class with neither true nor predicted objects scores 1, as :class:`InstanceScores`
    scores an empty image (nothing missed, nothing wrong); ``<class>_n_true`` and
    ``<class>_n_pred`` say so.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        self.scores = {name: InstanceScores() for name in self.classes}
        self.right = 0
        self.matched = 0

    def add(self, truth: np.ndarray, truth_classes: dict[int, str], decoded) -> None:
        """One image: true labels and their classes, and the model's decoded objects."""
        truth = np.asarray(truth)
        predicted, predicted_classes = _all_objects(decoded)
        for name in self.classes:
            true_ids = [k for k, v in truth_classes.items() if v == name]
            pred_ids = [k for k, v in predicted_classes.items() if v == name]
            self.scores[name].add(
                np.where(np.isin(truth, true_ids), truth, 0),
                np.where(np.isin(predicted, pred_ids), predicted, 0),
            )
        true_ids, pred_ids, _ = matched_pairs(truth, predicted, 0.5)
        self.matched += true_ids.size
        self.right += sum(
            truth_classes.get(int(t)) == predicted_classes.get(int(p))
            for t, p in zip(true_ids, pred_ids)
        )

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, scores in self.scores.items():
            summary = scores.matching_summary()
            for key in ("f1", "precision", "recall", "ap", "n_true", "n_pred"):
                out[f"{name}_{key}"] = summary[key]
        out["class_accuracy"] = self.right / self.matched if self.matched else float("nan")
        return out


def _all_objects(decoded) -> tuple[np.ndarray, dict[int, str]]:
    """Every object set's objects in one label image (sets do not overlap), and the class
    name of each object."""
    combined = None
    classes: dict[int, str] = {}
    for name, labels in decoded.labels.items():
        labels = np.asarray(labels, dtype=np.int64)
        if combined is None:
            combined = np.zeros(labels.shape, dtype=np.int64)
        offset = int(combined.max())
        combined = np.where(labels > 0, labels + offset, combined)
        names = decoded.classes.get(name, ([], None))[0]
        classes.update({offset + i + 1: c for i, c in enumerate(names)})
    return combined, classes


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


def evaluate_micronuclei_folders(
    pred: str | Path, micronuclei: str | Path, nuclei: str | Path, parents: str | Path
) -> dict[str, float]:
    """Micronucleus metrics of the predictions in ``pred`` (see
    :mod:`cellseg_hcs.training.micronuclei`).

    ``pred`` holds what ``cellseg-hcs segment`` writes: ``<stem>_labels.tif`` (nuclei),
    ``<stem>_micronuclei_labels.tif`` and ``<stem>_micronuclei_parents.tif`` (the model's
    parent of each micronucleus, by its model's parent rule). Without the parent map (labels
    from elsewhere), each predicted micronucleus' parent is its nearest predicted nucleus
    (:func:`~cellseg_hcs.field.relations.nearest_parents`).
    ``micronuclei``, ``nuclei`` and ``parents`` hold the true micronuclei, nuclei and parent
    maps (each micronucleus pixel holds its parent nucleus' id), named like the images.
    """
    from .micronuclei import MicronucleusScores, nuclei_ids, parents_from_map

    pred = Path(pred)
    truth = ImageMaskFolder(nuclei, micronuclei, cache=False)
    scores = MicronucleusScores()
    for nuclei_path, micronuclei_path in truth.pairs:
        stem = nuclei_path.stem
        found = {
            kind: next(
                (
                    p
                    for p in pred.glob(f"{stem}{ending}.*")
                    if p.suffix.lower() in (".tif", ".tiff")
                ),
                None,
            )
            for kind, ending in (("nuclei", "_labels"), ("micronuclei", "_micronuclei_labels"))
        }
        missing = [kind for kind, path in found.items() if path is None]
        if missing:
            raise InputError(f"{pred}: no predicted {missing[0]} for {nuclei_path.name}.")
        parent_files = [p for p in Path(parents).glob(f"{stem}.*")]
        if not parent_files:
            raise InputError(f"{parents}: no parent map for {nuclei_path.name}.")
        true_micronuclei = as_instances(read_image(micronuclei_path))
        predicted_nuclei = np.asarray(read_image(found["nuclei"]))
        predicted_micronuclei = np.asarray(read_image(found["micronuclei"]))
        predicted_parents = pred / f"{stem}_micronuclei_parents.tif"
        true_parent_map = read_image(parent_files[0])
        scores.add(
            nuclei_ids(read_image(nuclei_path), true_parent_map),
            true_micronuclei,
            parents_from_map(true_micronuclei, true_parent_map),
            predicted_nuclei,
            predicted_micronuclei,
            parents_from_map(predicted_micronuclei, read_image(predicted_parents))
            if predicted_parents.is_file()
            else nearest_parents(predicted_micronuclei, predicted_nuclei),
        )
    out = {f"micronuclei_{k}": v for k, v in scores.summary().items()}
    out["micronuclei_images"] = float(len(truth))
    return out
