"""Augmentation keeps images and labels in register and is repeatable from its seed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import disk
from scipy import ndimage as ndi

from cellseg_hcs.training.augment import (
    AugmentSettings,
    _touching_place,
    choose_scale,
    flip_rotate,
    paste_objects,
    random_patch,
    vary_intensity,
)
from cellseg_hcs.training.data.base import Sample
from cellseg_hcs.training.train import PatchSampler


def _scene(shape=(120, 160)):
    labels = np.zeros(shape, np.int32)
    for index, (center, radius) in enumerate([((30, 40), 12), ((80, 100), 16), ((60, 20), 8)], 1):
        labels[disk(shape, center, radius)] = index
    image = (labels > 0).astype(np.float32)
    return image, labels


@pytest.mark.parametrize("seed", range(8))
def test_flips_and_rotations_move_image_and_labels_together(seed):
    image, labels = _scene()
    out_image, out_labels = flip_rotate(image, labels, np.random.default_rng(seed))
    np.testing.assert_array_equal(out_image > 0, out_labels > 0)
    assert sorted(np.unique(out_labels)) == sorted(np.unique(labels))


@pytest.mark.parametrize("scale", [0.25, 0.5, 1.0, 2.0, 3.0])
def test_patches_are_the_patch_size_and_objects_scale_with_them(scale):
    image, labels = _scene()
    settings = AugmentSettings(patch_size=64, object_centred_probability=1.0)
    patch, patch_labels = random_patch(
        image[None], labels, scale, settings, np.random.default_rng(1)
    )
    assert patch.shape == (1, 64, 64) and patch_labels.shape == (64, 64)
    # Image (linear, anti-aliased) and labels (nearest) may differ only along object edges.
    inside, labelled = patch[0] > 0.5, patch_labels > 0
    assert (inside & labelled).sum() >= 0.85 * (inside | labelled).sum()


def test_wide_scales_reach_the_whole_diameter_range():
    settings = AugmentSettings(diameter_range=(8.0, 80.0), wide_scale_probability=1.0)
    rng = np.random.default_rng(0)
    diameters = [30 * choose_scale(30.0, settings, rng) for _ in range(2000)]
    assert 8 <= min(diameters) < 10 and 70 < max(diameters) <= 80


def test_intensity_changes_are_repeatable_from_the_seed():
    image, _ = _scene()
    settings = AugmentSettings(blur_probability=1.0, noise_probability=1.0)
    first = vary_intensity(image, settings, np.random.default_rng(7))
    second = vary_intensity(image, settings, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and not np.array_equal(first, image)


def test_pasted_objects_never_overlap_existing_ones():
    image, labels = _scene()
    source_image, source_labels = _scene()
    out_image, out_labels = paste_objects(
        image, labels, source_image, source_labels, 3, np.random.default_rng(3)
    )
    assert out_labels.max() > labels.max()
    for index in np.unique(labels)[1:]:  # the originals are untouched
        np.testing.assert_array_equal(out_labels[labels == index], index)
    assert (out_image[out_labels > labels.max()] == 1).all()


@pytest.mark.parametrize("seed", range(6))
def test_touching_copies_touch_an_existing_object_and_overlap_none(seed):
    image, labels = _scene()
    source_image, source_labels = _scene()
    out_image, out_labels = paste_objects(
        image, labels, source_image, source_labels, 3, np.random.default_rng(seed), touching=True
    )
    for index in np.unique(labels)[1:]:  # the originals are untouched
        np.testing.assert_array_equal(out_labels[labels == index], index)
    pasted = np.unique(out_labels[out_labels > labels.max()])
    assert pasted.size >= 1
    for index in pasted:
        # each copy comes within one pixel of another object (a 2-pixel reach finds it)
        reach = ndi.binary_dilation(out_labels == index, iterations=2)
        neighbours = np.unique(out_labels[reach])
        assert set(neighbours) - {0, index}, f"copy {index} touches nothing"


def test_free_copies_keep_a_margin_from_every_object():
    image, labels = _scene()
    source_image, source_labels = _scene()
    _, out_labels = paste_objects(
        image, labels, source_image, source_labels, 3, np.random.default_rng(3)
    )
    for index in np.unique(out_labels[out_labels > labels.max()]):
        reach = ndi.binary_dilation(out_labels == index, iterations=2)
        assert set(np.unique(out_labels[reach])) == {0, index}


@pytest.mark.parametrize("seed", range(10))
def test_free_copies_keep_the_margin_from_each_other_in_a_crowded_patch(seed):
    """Twenty small copies into an empty 48x48 patch: each keeps 2 free pixels around it,
    also from the copies pasted before it."""
    source_labels = np.zeros((120, 120), np.int32)
    for index, (y, x) in enumerate(np.ndindex(6, 6), start=1):
        source_labels[disk(source_labels.shape, (10 + 20 * y, 10 + 20 * x), 5)] = index
    source_image = (source_labels > 0).astype(np.float32)
    empty = np.zeros((48, 48), np.int32)
    _, out_labels = paste_objects(
        empty.astype(np.float32),
        empty,
        source_image,
        source_labels,
        20,
        np.random.default_rng(seed),
    )
    copies = np.unique(out_labels)[1:]
    assert copies.size >= 2
    for index in copies:
        reach = ndi.binary_dilation(out_labels == index, iterations=2)
        assert set(np.unique(out_labels[reach])) == {0, index}, index


def test_pasted_copies_are_scaled_by_a_gain_in_the_range():
    image, labels = _scene()
    source_image, source_labels = _scene()
    out_image, out_labels = paste_objects(
        image, labels, source_image, source_labels, 3, np.random.default_rng(5), gain=(1.5, 2.0)
    )
    pasted = np.unique(out_labels[out_labels > labels.max()])
    assert pasted.size >= 1
    for index in pasted:  # the source objects are 1.0 everywhere
        values = np.unique(out_image[out_labels == index])
        assert values.size == 1 and 1.5 <= values[0] <= 2.0


def test_the_sampler_pastes_touching_copies_when_asked():
    image, labels = _scene((256, 256))
    sample = Sample(image=image, labels=labels)
    settings = AugmentSettings(
        density_probability=1.0,
        touching_probability=1.0,
        density_objects=(3, 4),
        wide_scale_probability=0.0,
        scale_jitter=(1.0, 1.0),
        noise_probability=0.0,
        blur_probability=0.0,
    )
    plain = replace(settings, touching_probability=0.0)
    touching = [
        _touch_count(PatchSampler([sample], settings, seed).patch()[1]) for seed in range(4)
    ]
    free = [_touch_count(PatchSampler([sample], plain, seed).patch()[1]) for seed in range(4)]
    assert sum(touching) > sum(free)


def _touch_count(targets: np.ndarray) -> int:
    """How many objects touch another: peaks of the distance target split by a zero line."""
    objects, count = ndi.label(targets[0] > 0.5)
    peaks = ndi.label(targets[1] > 0.8)[0]
    return sum(len(np.unique(peaks[objects == i])) - 1 > 1 for i in range(1, count + 1))


def test_a_touching_copy_never_lands_inside_an_open_object_without_touching_it():
    """Approaching a C-shaped nucleus through its opening reaches its centre without ever
    meeting it: that try must fail, not return a place that touches nothing."""
    labels = np.zeros((96, 96), np.int32)
    ring = disk(labels.shape, (48, 48), 30) & ~disk(labels.shape, (48, 48), 22)
    ring[40:57, 48:] = False  # the opening, facing right
    labels[ring] = 1
    small = disk((5, 5), (2, 2), 2)
    for seed in range(60):
        place = _touching_place(labels, small, np.random.default_rng(seed))
        if place is None:
            continue
        reach = ndi.binary_dilation(np.pad(small, 2), iterations=2)
        region = tuple(slice(s.start - 2, s.stop + 2) for s in place)
        window = labels[tuple(slice(max(r.start, 0), r.stop) for r in region)]
        assert window.shape == reach.shape and (window[reach] > 0).any(), (seed, place)
