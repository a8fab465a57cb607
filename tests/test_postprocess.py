"""Maps to labels: seeded watershed splits touching objects, drops small ones, fills holes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import disk

from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.postprocess import PostprocessSettings, label_dtype, maps_to_labels
from cellseg_hcs.training.targets import instance_distance, instance_targets


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
    kept = maps_to_labels(foreground, foreground, PostprocessSettings(min_size=1, fill_holes=False))
    assert filled[15, 15] > 0 and kept[15, 15] == 0


def test_empty_maps_give_empty_uint16_labels():
    labels = maps_to_labels(np.zeros((16, 16)), np.zeros((16, 16)))
    assert labels.dtype == np.uint16 and not labels.any()


def test_labels_widen_to_uint32_beyond_65535_objects():
    assert label_dtype(65535) == np.uint16
    assert label_dtype(65536) == np.uint32
    foreground = np.zeros((2 * 260, 2 * 260))
    foreground[::2, ::2] = 1  # 67600 one-pixel objects
    labels = maps_to_labels(
        foreground, foreground, PostprocessSettings(min_size=1, fill_holes=False)
    )
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
            foreground[top * scale : (top + 20) * scale, 5 * scale : 25 * scale] = 1  # nuclei
        foreground[10 * scale : 13 * scale, 60 * scale : 63 * scale] = 1  # a micronucleus
        settings = PostprocessSettings(min_size=1, min_size_fraction=0.1)
        labels = maps_to_labels(foreground, foreground, settings)
        assert labels.max() == 3 and labels[11 * scale, 61 * scale] == 0
        without = maps_to_labels(foreground, foreground, PostprocessSettings(min_size=1))
        assert without.max() == 4


# ---------------------------------------------------------------- seeds from distance peaks
PEAKS = PostprocessSettings(min_size=1, seeds="peaks", peak_height=0.3)


def _two_peaks(saddle: float) -> tuple[np.ndarray, np.ndarray]:
    """One foreground bar whose distance map has peaks of 1 joined by a pass at ``saddle``."""
    x = np.linspace(0, 1, 41)
    profile = np.maximum(
        1 - np.abs(x - 0.25) / 0.25 * (1 - saddle), 1 - np.abs(x - 0.75) / 0.25 * (1 - saddle)
    ).clip(0, 1)
    distance = np.zeros((9, 45))
    distance[2:7, 2:43] = profile
    return (distance > 0).astype(float), distance


def test_peaks_split_touching_objects_whose_maps_merge_above_any_threshold():
    foreground, distance = _two_peaks(saddle=0.6)
    by_threshold = maps_to_labels(
        foreground, distance, PostprocessSettings(min_size=1, seed_threshold=0.5)
    )
    assert by_threshold.max() == 1  # the pass at 0.6 joins both seeds above 0.5
    assert maps_to_labels(foreground, distance, PEAKS).max() == 2


def test_peaks_keep_a_nucleus_with_a_shallow_dent_whole():
    foreground, distance = _two_peaks(saddle=0.85)  # the dent is 0.15 deep, under 0.3
    assert maps_to_labels(foreground, distance, PEAKS).max() == 1
    by_threshold = maps_to_labels(
        foreground, distance, PostprocessSettings(min_size=1, seed_threshold=0.9)
    )
    assert by_threshold.max() == 2


def test_peaks_leave_no_foreground_unlabelled():
    foreground, distance = _two_peaks(saddle=0.2)
    faint = distance * 0.25  # every peak lower than peak_height
    for maps in ((foreground, distance), (foreground, faint)):
        labels = maps_to_labels(*maps, PEAKS)
        assert ((labels > 0) == (foreground > 0)).all()
    assert maps_to_labels(foreground, faint, PEAKS).max() == 1


def test_peaks_equal_h_maxima_seeds_over_the_whole_field(mnfinder_dir):
    """The per-component shortcut gives exactly the textbook whole-image result."""
    import tifffile
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    truth = tifffile.imread(next((mnfinder_dir / "nuclei_labels").glob("*.tif")))
    foreground, distance = instance_targets(truth, "distance")
    # Smooth noise, like a network's maps: it adds shallow peaks and moves the passes.
    noise = ndi.gaussian_filter(np.random.default_rng(0).normal(0, 0.3, distance.shape), 2)
    distance = np.maximum(distance + noise * (foreground > 0), 0)  # no flat tops: no ties
    settings = PostprocessSettings(min_size=1, seeds="peaks", peak_height=0.3, fill_holes=False)
    labels = maps_to_labels(foreground, distance, settings)

    mask = foreground > 0.5
    masked = np.where(mask, distance, 0).astype(np.float32)
    cross = ndi.generate_binary_structure(2, 1)  # objects are 4-connected
    seeds, n_seeds = ndi.label(h_maxima(masked, 0.3, footprint=cross).astype(bool) & mask)
    expected = watershed(-masked, seeds, mask=mask)
    assert n_seeds > len(np.unique(truth)) - 1  # the noise made extra peaks to sort out
    flooded = expected > 0  # the textbook leaves seedless specks unlabelled; we keep them
    pairs = np.unique(np.stack([labels[flooded], expected[flooded]]), axis=1)
    assert pairs.shape[1] == len(np.unique(labels[flooded])) == n_seeds  # same partition
    assert (labels[mask] > 0).all()


def test_an_unknown_seed_method_is_refused():
    import pytest

    foreground, distance = _two_peaks(saddle=0.5)
    with pytest.raises(ValueError, match="unknown seeds 'maxima'"):
        maps_to_labels(foreground, distance, PostprocessSettings(seeds="maxima"))


def test_doubtful_objects_are_dropped_and_confident_small_ones_kept():
    foreground = np.zeros((40, 90))
    for left in (5, 30, 55):
        foreground[5:25, left : left + 20] = 0.95  # three nuclei
    foreground[30:35, 10:15] = 0.9  # a small nucleus the network is sure of
    foreground[30:35, 40:45] = 0.6  # a small speck it doubts
    distance = (foreground > 0).astype(float)
    by_score = maps_to_labels(foreground, distance, PostprocessSettings(min_size=1, min_score=0.8))
    assert by_score.max() == 4 and by_score[32, 12] > 0 and by_score[32, 42] == 0
    by_size = maps_to_labels(
        foreground, distance, PostprocessSettings(min_size=1, min_size_fraction=0.25)
    )
    assert by_size.max() == 3 and by_size[32, 12] == 0  # a size filter loses the small nucleus


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (37, 5), (128, 131)])
def test_the_fast_3x3_maximum_is_scipys_maximum_filter(shape):
    from scipy import ndimage as ndi

    from cellseg_hcs.field.postprocess import maximum_3x3

    rng = np.random.default_rng(sum(shape))
    image = rng.random(shape).astype(np.float32)
    image[rng.random(shape) < 0.3] = 0.5  # plateaus, where ties decide the peaks
    np.testing.assert_array_equal(maximum_3x3(image), ndi.maximum_filter(image, size=3))


# Two lobes along a bar: distance peaks of 1.0 and 0.95 joined by a pass at 0.6, so the lower
# rises 0.35 above the pass: peaks of height 0.3 split them and peaks of height 0.5 do not.
LOBES = PostprocessSettings(
    min_size=1, seeds="peaks", peak_height=0.3, merge_height=0.5, merge_contrast=0.05
)


def _two_lobes(pass_height: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    profile = np.interp(np.arange(40), [0, 10, 20, 30, 39], [0.05, 1.0, pass_height, 0.95, 0.05])
    distance = np.zeros((9, 44))
    distance[2:7, 2:42] = profile
    return (distance > 0).astype(float), distance


def _brightness(left: float, right: float) -> np.ndarray:
    image = np.zeros((9, 44))
    image[2:7, 2:22], image[2:7, 22:42] = left, right
    return image


def test_alike_lobes_split_by_a_shallow_pass_are_one_object():
    foreground, distance = _two_lobes()
    assert maps_to_labels(foreground, distance, replace(LOBES, merge_height=0)).max() == 2
    labels = maps_to_labels(foreground, distance, LOBES, image=_brightness(1.0, 1.03))
    assert labels.max() == 1 and (labels > 0).sum() == (foreground > 0).sum()


def test_touching_objects_of_different_brightness_stay_apart():
    foreground, distance = _two_lobes()
    assert maps_to_labels(foreground, distance, LOBES, image=_brightness(1.0, 0.7)).max() == 2


def test_objects_split_by_a_deep_pass_stay_apart_however_alike():
    foreground, distance = _two_lobes(pass_height=0.2)  # 0.8 deep: two objects at 0.5 too
    assert maps_to_labels(foreground, distance, LOBES, image=_brightness(1.0, 1.0)).max() == 2


def test_the_image_may_be_the_networks_cyx_input():
    foreground, distance = _two_lobes()
    image = np.stack([_brightness(1.0, 1.0), _brightness(1.0, 0.2)])  # the first channel counts
    assert maps_to_labels(foreground, distance, LOBES, image=image).max() == 1


def test_merging_needs_the_image_and_says_so_in_one_sentence():
    foreground, distance = _two_lobes()
    with pytest.raises(SettingError, match="needs the image .* or set merge_height=0"):
        maps_to_labels(foreground, distance, LOBES)
    with pytest.raises(SettingError, match="differ in shape"):
        maps_to_labels(foreground, distance, LOBES, image=np.ones((9, 40)))


def test_threshold_seeds_do_not_join():
    foreground, distance = _two_lobes()
    by_threshold = replace(LOBES, seeds="threshold", seed_threshold=0.8)
    np.testing.assert_array_equal(
        maps_to_labels(foreground, distance, by_threshold, image=_brightness(1.0, 1.0)),
        maps_to_labels(foreground, distance, replace(by_threshold, merge_height=0)),
    )
    assert maps_to_labels(foreground, distance, by_threshold).max() == 2  # no image needed
