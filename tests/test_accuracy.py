"""The shipped `nuclei` model against real hand-drawn labels (mnfinder test split, unseen).

The bar from the foundation issue is pooled instance F1@0.5 >= 0.94 and AP@[0.5:0.95] >= 0.75
on the 16 test images. Those live beside the repository (../shared); the 4 committed in
tests/data are checked in every clone, against a floor set below what the model reaches there
(see the model card for the measured numbers).
"""

from __future__ import annotations

import pytest

import cellseg_hcs as cs
from cellseg_hcs.data import ImageMaskFolder
from cellseg_hcs.evaluate import evaluate_model


@pytest.fixture(scope="module")
def model():
    return cs.load_model("nuclei")


def test_nuclei_model_on_the_committed_test_images(model, mnfinder_dir):
    data = ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    scores = evaluate_model(model, data)
    assert scores["f1"] >= COMMITTED_F1
    assert scores["ap"] >= COMMITTED_AP


def test_nuclei_model_meets_the_bar_on_the_whole_mnfinder_test_split(model, shared_mnfinder):
    data = ImageMaskFolder(shared_mnfinder / "images", shared_mnfinder / "nuclei_labels",
                           pattern="test__*")
    assert len(data) == 16
    scores = evaluate_model(model, data)
    assert scores["f1"] >= 0.94
    assert scores["ap"] >= 0.75


COMMITTED_F1 = 0.90
COMMITTED_AP = 0.70
