"""The other-labs benchmark reads each set as fetched and scores it against its masks."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from conftest import disk, load_benchmark

other_labs = load_benchmark("other_labs")


def _write_sets(folder):
    labels = np.zeros((64, 64), np.uint16)
    labels[disk(labels.shape, (20, 20), 8)] = 1
    labels[disk(labels.shape, (44, 40), 10)] = 2
    image = (labels > 0).astype(np.uint16) * 1000 + 100
    tifffile.imwrite(folder / "dsb2018_image.tif", image)
    tifffile.imwrite(folder / "dsb2018_mask.tif", labels)
    series = np.stack([np.roll(labels, t, axis=1) for t in range(20)])
    tifffile.imwrite(folder / "ctc-hela_image.tif", (series > 0).astype(np.uint16) * 900 + 50)
    tifffile.imwrite(folder / "ctc-hela_mask.tif", series)
    return labels, series


def test_a_time_series_set_is_scored_on_its_chosen_frames(tmp_path):
    labels, series = _write_sets(tmp_path)
    frames = other_labs.samples(tmp_path, "ctc-hela")
    assert len(frames) == len(other_labs.SETS["ctc-hela"][3])
    for sample, frame in zip(frames, other_labs.SETS["ctc-hela"][3]):
        np.testing.assert_array_equal(sample.labels, series[frame])
        np.testing.assert_array_equal(sample.image > 500, sample.labels > 0)  # same frame
    (single,) = other_labs.samples(tmp_path, "dsb2018")
    np.testing.assert_array_equal(single.labels, labels)


def test_a_perfect_answer_scores_one_and_a_missing_object_costs_recall(tmp_path):
    labels, _ = _write_sets(tmp_path)
    data = other_labs.samples(tmp_path, "dsb2018")
    perfect = other_labs.score(lambda image: labels, data)
    assert perfect["f1"] == 1.0 and perfect["ap"] == 1.0
    half = other_labs.score(lambda image: np.where(labels == 2, 0, labels), data)
    assert half["recall"] == 0.5 and half["precision"] == 1.0


def test_the_command_writes_rows_for_every_set_and_method(tmp_path):
    _write_sets(tmp_path)
    out = tmp_path / "result.json"
    assert other_labs.main(["--data", str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {(r["data"], r["method"]) for r in result["rows"]} == {
        (name, method)
        for name in other_labs.SETS
        for method in ("cellseg-hcs", "classic (Otsu + watershed)")
    }
    assert result["model_hash"]
