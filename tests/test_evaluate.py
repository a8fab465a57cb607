"""`cellseg-hcs evaluate`: predictions against true labels, pixel and instance metrics."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from click.testing import CliRunner

from cellseg_hcs.cli import main
from cellseg_hcs.training.metrics import InstanceScores


def _folders(tmp_path, truth_labels, pred_labels):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    for index, (t, p) in enumerate(zip(truth_labels, pred_labels)):
        tifffile.imwrite(truth / f"img{index}.tif", t)
        tifffile.imwrite(pred / f"img{index}_labels.tif", p)
    return truth, pred


def test_evaluating_truth_against_itself_scores_one(tmp_path, mnfinder_dir):
    labels = [tifffile.imread(p) for p in sorted((mnfinder_dir / "nuclei_labels").glob("*.tif"))]
    truth, pred = _folders(tmp_path, labels, labels)
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--pred",
            str(pred),
            "--truth",
            str(truth),
            "--json",
            str(tmp_path / "s.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    for key in (
        "f1",
        "ap",
        "coco_ap",
        "coco_ap50",
        "coco_ap75",
        "pixel_iou",
        "pixel_dice",
        "mean_matched_iou",
    ):
        assert scores[key] == 1.0, key
    assert scores["afnr"] == 0.0 and scores["images"] == 4


def test_evaluate_counts_a_missed_and_a_spurious_object(tmp_path):
    truth = np.zeros((40, 40), np.uint16)
    truth[2:10, 2:10], truth[20:30, 20:30] = 1, 2
    pred = np.zeros_like(truth)
    pred[2:10, 2:10], pred[32:38, 2:8] = 1, 2  # one right, one missed, one spurious
    truth_dir, pred_dir = _folders(tmp_path, [truth], [pred])
    result = CliRunner().invoke(
        main, ["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]
    )
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if x.startswith("f1 "))
    assert float(line.split()[1]) == 0.5  # 2*1 / (2*1 + 1 + 1)


def test_a_missing_prediction_is_named(tmp_path):
    truth = np.ones((8, 8), np.uint16)
    truth_dir, pred_dir = _folders(tmp_path, [truth], [truth])
    tifffile.imwrite(truth_dir / "extra.tif", truth)
    result = CliRunner().invoke(
        main, ["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]
    )
    assert result.exit_code == 2 and "no prediction for extra.tif" in result.output


def test_folders_with_no_pair_at_all_say_which_is_which(tmp_path):
    truth_dir, pred_dir = _folders(tmp_path, [np.ones((8, 8), np.uint16)], [])
    tifffile.imwrite(pred_dir / "other_labels.tif", np.ones((8, 8), np.uint16))
    result = CliRunner().invoke(
        main, ["evaluate", "--pred", str(pred_dir), "--truth", str(truth_dir)]
    )
    assert result.exit_code == 2
    assert f"no prediction in {pred_dir} pairs with a true mask in {truth_dir}" in result.output


def test_afnr_and_mean_matched_iou_by_hand():
    truth = np.zeros((20, 40), np.uint16)
    truth[0:10, 0:10] = 1  # 100 px
    truth[0:10, 20:30] = 2
    pred = np.zeros_like(truth)
    pred[0:10, 0:8] = 1  # IoU 0.8 with object 1
    pred[0:10, 20:30] = 2  # IoU 1.0 with object 2
    scores = InstanceScores()
    scores.add(truth, pred)
    summary = scores.summary()
    assert summary["mean_matched_iou"] == np.float64(0.9)
    # Object 1 is missed at thresholds 0.8 .. 0.95 (4 of 10; match needs IoU > t): FNR 1/2 there.
    assert summary["afnr"] == np.float64(4 * 0.5 / 10)
