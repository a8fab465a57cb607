"""The shipped `nuclei` model against real hand-drawn labels (mnfinder test split, unseen).

Measured for the shipped model (see cellseg_hcs/weights/MODEL_CARD.md): pooled instance
F1@0.5 0.911 and AP@[0.5:0.95] 0.696 on the 16 test images; 0.869 / 0.652 on the 4 of them
committed in tests/data. The tests below guard those levels (a retrained model must not do
worse). The foundation issue's bar, F1 >= 0.94 and AP >= 0.75, is NOT met yet: that test is
a strict expected failure, so it turns red the day a model meets the bar and is updated.
"""

from __future__ import annotations

import pytest

import cellseg_hcs as cs
from cellseg_hcs.data import ImageMaskFolder
from cellseg_hcs.evaluate import evaluate_model


@pytest.fixture(scope="module")
def model():
    return cs.load_model("nuclei")


@pytest.fixture(scope="module")
def test_split_scores(model, shared_mnfinder):
    data = ImageMaskFolder(shared_mnfinder / "images", shared_mnfinder / "nuclei_labels",
                           pattern="test__*")
    assert len(data) == 16
    return evaluate_model(model, data)


def test_nuclei_model_on_the_committed_test_images(model, mnfinder_dir):
    data = ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    scores = evaluate_model(model, data)
    assert scores["f1"] >= 0.85
    assert scores["ap"] >= 0.63


def test_nuclei_model_keeps_its_measured_accuracy_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["f1"] >= 0.90
    assert test_split_scores["ap"] >= 0.68


@pytest.mark.xfail(strict=True, reason="the foundation issue's bar is not met yet: "
                   "F1 0.911 / AP 0.696 measured against 0.94 / 0.75")
def test_nuclei_model_meets_the_foundation_bar_on_the_mnfinder_test_split(test_split_scores):
    assert test_split_scores["f1"] >= 0.94
    assert test_split_scores["ap"] >= 0.75
