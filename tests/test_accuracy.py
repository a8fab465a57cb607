"""The shipped `nuclei` model against real hand-drawn labels (mnfinder test split, unseen).

Measured for the shipped model as users run it (``Model.segment``, ``--diameter auto``; see
cellseg_hcs/weights/MODEL_CARD.md): pooled instance F1@0.5 0.942 and AP@[0.5:0.95] 0.737 on
the 16 test images (0.941 / 0.740 at every image's own scale); 0.946 / 0.799 on the 4 of
them committed in tests/data. The tests below guard those levels (a retrained model must not do
worse). The foundation issue's bar is F1 >= 0.94 and AP >= 0.75: the F1 half is met and
tested as such; the AP half is NOT met yet, so that test is a strict expected failure, which
turns red the day a model meets it and is updated.
"""

from __future__ import annotations

import pytest

import cellseg_hcs as cs
from cellseg_hcs.data import ImageMaskFolder
from cellseg_hcs.metrics import evaluate_pairs


def score_as_users_run_it(model, data) -> dict:
    """Pooled scores of the labels a user gets (the defaults of ``Model.segment``)."""
    return evaluate_pairs([(sample.labels, model.segment(sample.image)) for sample in data])


@pytest.fixture(scope="module")
def model():
    return cs.load_model("nuclei")


@pytest.fixture(scope="module")
def test_split_scores(model, shared_mnfinder):
    data = ImageMaskFolder(shared_mnfinder / "images", shared_mnfinder / "nuclei_labels",
                           pattern="test__*")
    assert len(data) == 16
    return score_as_users_run_it(model, data)


def test_nuclei_model_on_the_committed_test_images(model, mnfinder_dir):
    data = ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    scores = score_as_users_run_it(model, data)
    assert scores["f1"] >= 0.93
    assert scores["ap"] >= 0.78


def test_nuclei_model_keeps_its_measured_accuracy_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["f1"] >= 0.935
    assert test_split_scores["ap"] >= 0.73


def test_nuclei_model_meets_the_foundation_f1_bar_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["f1"] >= 0.94


@pytest.mark.xfail(strict=True, reason="the foundation issue's AP bar is not met yet: "
                   "AP 0.737 measured against 0.75")
def test_nuclei_model_meets_the_foundation_ap_bar_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["ap"] >= 0.75
