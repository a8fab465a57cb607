"""Maps to labels: seeded watershed splits touching objects, drops small ones, fills holes."""

from __future__ import annotations

import numpy as np
from conftest import disk

from cellseg_hcs.postprocess import PostprocessSettings, label_dtype, maps_to_labels
from cellseg_hcs.targets import instance_distance, instance_targets


def _two_touching_disks():
    shape = (60, 100)
    labels = np.zeros(shape, np.int32)
    labels[disk(shape, (30, 35), 16)] = 1
    labels[disk(shape, (30, 64), 16) & (labels == 0)] = 2
    return labels


def test_touching_objects_are_split_by_their_distance_maps():
    truth = _two_touching_disks()
    foreground, distance = instance_targets(truth)
    labels = maps_to_labels(foreground, distance, PostprocessSettings(min_size=1))
    assert labels.max() == 2
    for index in (1, 2):
        overlap = np.bincount(labels[truth == index])
        assert overlap.argmax() > 0 and overlap.max() / (truth == index).sum() > 0.95


def test_foreground_without_a_seed_still_becomes_an_object():
    foreground = np.zeros((20, 20))
    foreground[5:15, 5:15] = 1
    distance = np.zeros((20, 20))  # no seed anywhere
    labels = maps_to_labels(foreground, distance, PostprocessSettings(min_size=1))
    assert labels.max() == 1 and (labels > 0).sum() == 100


def test_objects_below_min_size_are_dropped_and_ids_stay_consecutive():
    foreground = np.zeros((30, 30))
    foreground[2:4, 2:4] = 1  # 4 px
    foreground[10:20, 10:20] = 1  # 100 px
    foreground[22:28, 22:28] = 1  # 36 px
    labels = maps_to_labels(foreground, foreground, PostprocessSettings(min_size=10))
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[3, 3] == 0


def test_holes_are_filled_when_asked():
    foreground = np.zeros((30, 30))
    foreground[5:25, 5:25] = 1
    foreground[14:16, 14:16] = 0
    filled = maps_to_labels(foreground, foreground, PostprocessSettings(min_size=1))
    kept = maps_to_labels(foreground, foreground,
                          PostprocessSettings(min_size=1, fill_holes=False))
    assert filled[15, 15] > 0 and kept[15, 15] == 0


def test_empty_maps_give_empty_uint16_labels():
    labels = maps_to_labels(np.zeros((16, 16)), np.zeros((16, 16)))
    assert labels.dtype == np.uint16 and not labels.any()


def test_labels_widen_to_uint32_beyond_65535_objects():
    assert label_dtype(65535) == np.uint16
    assert label_dtype(65536) == np.uint32
    foreground = np.zeros((2 * 260, 2 * 260))
    foreground[::2, ::2] = 1  # 67600 one-pixel objects
    labels = maps_to_labels(foreground, foreground,
                            PostprocessSettings(min_size=1, fill_holes=False))
    assert labels.dtype == np.uint32 and labels.max() == 260 * 260


def test_distance_target_peaks_at_one_inside_every_object_and_is_zero_outside():
    truth = _two_touching_disks()
    distance = instance_distance(truth)
    assert distance[truth == 0].max() == 0
    for index in (1, 2):
        assert np.isclose(distance[truth == index].max(), 1.0)
        assert distance[truth == index].min() > 0


def test_objects_far_smaller_than_the_fields_median_are_dropped_at_any_scale():
    for scale in (1, 3):  # the same field at two magnifications: the same objects kept
        foreground = np.zeros((100 * scale, 100 * scale))
        for top in (5, 35, 65):
            foreground[top * scale:(top + 20) * scale, 5 * scale:25 * scale] = 1  # nuclei
        foreground[10 * scale:13 * scale, 60 * scale:63 * scale] = 1  # a micronucleus
        settings = PostprocessSettings(min_size=1, min_size_fraction=0.1)
        labels = maps_to_labels(foreground, foreground, settings)
        assert labels.max() == 3 and labels[11 * scale, 61 * scale] == 0
        without = maps_to_labels(foreground, foreground, PostprocessSettings(min_size=1))
        assert without.max() == 4
