"""Training targets: the second map has one peak per object, so decoding keeps objects whole."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import disk

import cellseg_hcs as cs
from cellseg_hcs.field.postprocess import PostprocessSettings, maps_to_labels
from cellseg_hcs.training.metrics import InstanceScores
from cellseg_hcs.training.targets import centre_map, instance_distance, instance_targets

DECODE = PostprocessSettings(seeds="peaks", peak_height=0.3, min_size=1)


def _lobed() -> np.ndarray:
    """One nucleus with two lobes: 48 px long, 28 px wide, 19 px at its waist."""
    shape = (60, 100)
    labels = np.zeros(shape, np.int32)
    labels[disk(shape, (30, 40), 14) | disk(shape, (30, 60), 14)] = 1
    return labels


def test_centre_map_is_one_at_each_centre_and_falls_towards_the_edge():
    labels = np.zeros((40, 80), np.int32)
    labels[disk(labels.shape, (20, 20), 10)] = 1
    labels[disk(labels.shape, (20, 55), 15)] = 2
    centre = centre_map(labels)
    assert centre[labels == 0].max() == 0
    for index, middle in ((1, (20, 20)), (2, (20, 55))):
        inside = centre[labels == index]
        assert centre[middle] == inside.max() == 1
        assert 0 < inside.min() < 0.2
    assert centre[20, 30] < centre[20, 25] < centre[20, 20]  # falls along a radius


def test_a_lobed_object_has_one_centre_peak_but_two_distance_peaks():
    truth = _lobed()
    assert maps_to_labels(*instance_targets(truth, "centre"), DECODE).max() == 1
    # the distance to the edge peaks once per lobe, and the watershed splits it there
    assert maps_to_labels(*instance_targets(truth, "distance"), DECODE).max() >= 2


def test_touching_objects_are_split_at_the_valley_between_their_centres():
    shape = (60, 100)
    truth = np.zeros(shape, np.int32)
    truth[disk(shape, (30, 35), 16)] = 1
    truth[disk(shape, (30, 64), 16) & (truth == 0)] = 2
    labels = maps_to_labels(*instance_targets(truth, "centre"), DECODE)
    assert labels.max() == 2
    assert (labels == truth).mean() > 0.99


def test_decoding_the_true_centre_maps_of_real_nuclei_recovers_them(mnfinder_dir):
    """The ceiling of the decoding on hand-annotated mnfinder labels (tests/data)."""
    truth_folder = cs.data.ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    scores = {"centre": InstanceScores(), "distance": InstanceScores()}
    for sample in truth_folder:
        for target, score in scores.items():
            score.add(
                sample.labels,
                maps_to_labels(
                    *instance_targets(sample.labels, target), PostprocessSettings(seeds="peaks")
                ),
            )
    centre, distance = (scores[t].matching_summary() for t in ("centre", "distance"))
    assert centre["f1"] >= 0.97 and centre["ap"] >= 0.9
    assert distance["ap"] < centre["ap"] - 0.05  # lobed nuclei are split by the old target


def test_an_unknown_target_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown target 'edges'"):
        instance_targets(np.zeros((4, 4), int), "edges")
    assert instance_distance(np.zeros((4, 4), int)).max() == 0
