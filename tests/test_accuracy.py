"""The shipped `nuclei` model against real hand-drawn labels (mnfinder test split, unseen).

Measured for the shipped model as users run it (``Model.segment``, ``--diameter auto``; see
cellseg_hcs/weights/MODEL_CARD.md): pooled instance F1@0.5 0.946 and AP@[0.5:0.95] 0.750 on
the 16 test images (0.945 / 0.753 at every image's own scale); 0.950 / 0.813 on the 4 of
them committed in tests/data. The tests below guard those levels (a retrained model must not do
worse) and the foundation issue's bar, F1 >= 0.94 and AP >= 0.75, which this model meets with
little to spare on AP (0.7505, the same with the onnxruntime and torch CPU backends; a GPU or
lower-precision backend may move it by a few objects).
"""

from __future__ import annotations

import pytest

import cellseg_hcs as cs
from cellseg_hcs.training.data import ImageMaskFolder
from cellseg_hcs.training.metrics import evaluate_pairs


def score_as_users_run_it(model, data) -> dict:
    """Pooled scores of the labels a user gets (the defaults of ``Model.segment``)."""
    return evaluate_pairs([(sample.labels, model.segment(sample.image)) for sample in data])


@pytest.fixture(scope="module")
def model():
    return cs.load_model("nuclei")


@pytest.fixture(scope="module")
def test_split_scores(model, shared_mnfinder):
    data = ImageMaskFolder(
        shared_mnfinder / "images", shared_mnfinder / "nuclei_labels", pattern="test__*"
    )
    assert len(data) == 16
    return score_as_users_run_it(model, data)


def test_nuclei_model_on_the_committed_test_images(model, mnfinder_dir):
    data = ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    scores = score_as_users_run_it(model, data)
    assert scores["f1"] >= 0.94
    assert scores["ap"] >= 0.80


def test_nuclei_model_keeps_its_measured_accuracy_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["f1"] >= 0.944  # measured 0.946
    assert test_split_scores["recall"] >= 0.95  # measured 0.957: the 0.9 score filter keeps nuclei


def test_nuclei_model_meets_the_foundation_f1_bar_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["f1"] >= 0.94


def test_nuclei_model_meets_the_foundation_ap_bar_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["ap"] >= 0.75
