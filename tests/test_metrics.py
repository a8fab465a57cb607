"""Metrics against cases worked out by hand."""

import numpy as np
import pytest

from cellseg_hcs.training.metrics import (
    IOU_THRESHOLDS,
    InstanceScores,
    auroc,
    coco_ap,
    iou_matrix,
    match_instances,
    pixel_metrics,
)


def test_pixel_metrics_on_a_hand_counted_case():
    pred = np.array([[1, 1, 0, 0]])
    truth = np.array([[0, 1, 1, 0]])
    # TP = 1, FP = 1, FN = 1
    scores = pixel_metrics(pred, truth)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["f1"] == pytest.approx(0.5)
    assert scores["dice"] == scores["f1"]
    assert scores["iou"] == pytest.approx(1 / 3)


def test_auroc_is_one_for_perfect_ranking_and_half_for_ties():
    truth = np.array([0, 0, 1, 1])
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), truth) == 1.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), truth) == 0.5
    # One positive below one negative: 3 of 4 pairs ordered -> 0.75.
    assert auroc(np.array([0.1, 0.7, 0.6, 0.9]), truth) == pytest.approx(0.75)


def test_iou_matrix_by_hand():
    truth = np.zeros((4, 4), int)
    truth[0:2, 0:2] = 1  # 4 px
    truth[2:4, 2:4] = 2  # 4 px
    pred = np.zeros((4, 4), int)
    pred[0:2, 0:3] = 5  # 6 px, overlaps object 1 by 4 -> IoU 4/6
    iou, truth_areas, pred_areas = iou_matrix(truth, pred)
    assert truth_areas.tolist() == [4, 4]
    assert pred_areas.tolist() == [6]
    assert iou[0, 0] == pytest.approx(4 / 6)
    assert iou[1, 0] == 0


def test_iou_matrix_is_the_same_for_gappy_huge_and_float_labels():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, (20, 30)) * 7  # labels 0, 7, 14, ... (gaps)
    pred = rng.integers(0, 4, (20, 30))
    expected = iou_matrix(truth, pred)
    huge = np.where(truth > 0, truth + 10**9, 0)  # beyond the lookup table's reach
    for t, p in ((huge, pred), (truth.astype(float), pred), (truth.astype(np.uint16), pred)):
        for got, want in zip(iou_matrix(t, p), expected):
            np.testing.assert_array_equal(got, want)


def test_matching_counts_at_each_threshold():
    truth = np.zeros((10, 10), int)
    truth[0:2, 0:5] = 1  # 10 px
    truth[5:10, 5:10] = 2  # 25 px
    pred = np.zeros((10, 10), int)
    pred[0:2, 0:4] = 1  # IoU 8/10 = 0.8 with object 1
    pred[5:10, 5:10] = 2  # IoU 1.0 with object 2
    pred[8:10, 0:2] = 3  # a false positive
    match = match_instances(truth, pred)
    assert match.n_true == 2 and match.n_pred == 3
    assert match.tp[0.5] == 2
    assert match.tp[0.75] == 2
    assert match.tp[0.8] == 1  # strictly above the threshold, as in DSB2018
    assert match.tp[0.95] == 1


def test_dsb_ap_is_tp_over_tp_fp_fn_averaged_over_thresholds():
    truth = np.zeros((10, 10), int)
    truth[0:2, 0:5] = 1
    truth[5:10, 5:10] = 2
    pred = np.zeros((10, 10), int)
    pred[0:2, 0:4] = 1  # IoU 0.8
    pred[5:10, 5:10] = 2  # IoU 1
    pred[8:10, 0:2] = 3  # FP
    scores = InstanceScores()
    scores.add(truth, pred)
    summary = scores.summary()
    # t in {0.50 .. 0.75}: TP 2, FP 1, FN 0 -> 2/3 (6 thresholds)
    # t in {0.80 .. 0.95}: TP 1, FP 2, FN 1 -> 1/4 (4 thresholds)
    assert summary["ap@0.50"] == pytest.approx(2 / 3)
    assert summary["ap@0.80"] == pytest.approx(1 / 4)
    assert summary["ap"] == pytest.approx((6 * 2 / 3 + 4 * 1 / 4) / 10)
    assert summary["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert summary["precision"] == pytest.approx(2 / 3)
    assert summary["recall"] == 1.0
    assert summary["mean_matched_iou"] == pytest.approx(0.9)
    # AFNR: FN/N_true = 0 for 6 thresholds, 1/2 for 4 -> 0.2
    assert summary["afnr"] == pytest.approx(0.2)


def test_scores_are_pooled_over_images_not_averaged():
    one = np.zeros((4, 4), int)
    one[0:2, 0:2] = 1
    empty = np.zeros((4, 4), int)
    scores = InstanceScores()
    scores.add(one, one)  # TP 1
    scores.add(empty, one)  # FP 1
    scores.add(one, empty)  # FN 1
    assert scores.summary()["f1"] == pytest.approx(2 / 4)
    assert scores.counts(0.5) == (1, 1, 1)


def test_perfect_prediction_scores_one_everywhere():
    labels = np.zeros((50, 50), int)
    labels[5:15, 5:15] = 1
    labels[20:45, 20:45] = 2
    scores = InstanceScores()
    scores.add(labels, labels)
    summary = scores.summary()
    for key in ("f1", "ap", "coco_ap", "coco_ap50", "coco_ap75", "mean_matched_iou"):
        assert summary[key] == pytest.approx(1.0), key
    assert summary["afnr"] == 0


def test_coco_ap_ranks_predictions_by_score():
    # Two true objects; three predictions: a high-score FP, and two TPs.
    iou = np.array([[0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])
    areas_true = np.array([100, 100])
    areas_pred = np.array([100, 100, 100])
    fp_first = coco_ap([(iou, areas_true, areas_pred, np.array([0.9, 0.8, 0.7]))])
    fp_last = coco_ap([(iou, areas_true, areas_pred, np.array([0.1, 0.8, 0.7]))])
    # FP last: precision 1 up to recall 1 -> AP50 = 1.
    assert fp_last["coco_ap50"] == pytest.approx(1.0)
    # FP first: precision at recall 0.5 is 1/2 and at recall 1 is 2/3; made monotone,
    # precision is 2/3 for every recall point 0..1 -> AP50 = 2/3.
    assert fp_first["coco_ap50"] == pytest.approx(2 / 3)


def test_coco_ap_by_size_ignores_other_sizes_and_is_nan_without_objects():
    iou = np.array([[0.96]])  # a match at every threshold up to 0.95
    result = coco_ap([(iou, np.array([20 * 20]), np.array([20 * 20]), np.array([1.0]))])
    assert result["coco_ap_small"] == pytest.approx(1.0)
    assert np.isnan(result["coco_ap_medium"])
    assert np.isnan(result["coco_ap_large"])


def test_thresholds_are_the_dsb_ten():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
