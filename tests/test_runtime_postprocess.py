"""Fast maps-to-labels gives the labels of the plain whole-field watershed (same objects)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from cellseg_hcs.field.postprocess import PostprocessSettings, fill_holes, maps_to_labels

pytestmark = pytest.mark.usefixtures("one_cpu_thread")
CROSS = ndi.generate_binary_structure(2, 1)


def plain_maps_to_labels(foreground, distance, settings, image=None):
    """The specification: one seeded watershed over the whole field, orphans kept, alike
    fragments merged again, then the filters."""
    labels = plain_split(foreground, distance, settings)
    if settings.merge_height > 0:
        labels = plain_merge(labels, foreground, distance, image, settings)
    return plain_drop(labels, foreground, settings)


def plain_merge(labels, foreground, distance, image, settings):
    """Touching objects whose peaks lie in one object at ``merge_height`` and whose mean
    intensities differ by under ``merge_contrast`` of their mean become one, pair by pair."""
    coarse = plain_split(foreground, distance, replace(settings, peak_height=settings.merge_height))
    ids = [i for i in np.unique(labels) if i]
    peak_in = {
        i: coarse[
            np.unravel_index(np.argmax(np.where(labels == i, distance, -np.inf)), labels.shape)
        ]
        for i in ids
    }
    mean = {i: image[labels == i].mean() for i in ids}
    merged = labels.copy()
    for i in ids:
        touching = np.unique(labels[ndi.binary_dilation(labels == i, CROSS) & (labels != i)])
        for j in touching[touching > i]:
            pair_mean = (mean[i] + mean[j]) / 2
            if (
                peak_in[i] == peak_in[j]
                and peak_in[i] > 0
                and pair_mean > 0
                and abs(mean[i] - mean[j]) < settings.merge_contrast * pair_mean
            ):
                merged[merged == merged[labels == j][0]] = merged[labels == i][0]
    return merged


def plain_split(foreground, distance, settings):
    """One seeded watershed over the whole field, orphans kept."""
    mask = foreground > settings.foreground_threshold
    if settings.fill_holes:
        mask = ndi.binary_fill_holes(mask)
    if settings.seeds == "peaks":  # h-maxima of the distance map inside the foreground
        masked = np.where(mask, distance, 0).astype(np.float32)
        peaks = h_maxima(masked, settings.peak_height, footprint=CROSS).astype(bool)
        seeds, n_seeds = ndi.label(peaks & mask)
    else:
        seeds, n_seeds = ndi.label((distance > settings.seed_threshold) & mask)
    components, n_components = ndi.label(mask)
    seeded = np.zeros(n_components + 1, dtype=bool)
    seeded[np.unique(components[seeds > 0])] = True
    orphan_ids, _ = ndi.label(~seeded[components] & mask)
    seeds = np.where(orphan_ids > 0, orphan_ids + n_seeds, seeds)
    return watershed(-distance, seeds, mask=mask)


def plain_drop(labels, foreground, settings):
    """The size and score filters, then objects numbered 1..N."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(settings.min_size, 1)
    keep[0] = False
    fraction = getattr(settings, "min_size_fraction", 0.0)  # relative size filter, if any
    if fraction > 0 and keep.any():
        keep &= sizes >= fraction * np.median(sizes[keep])
    if settings.min_score > 0:  # mean foreground probability of each object
        totals = np.bincount(labels.ravel(), weights=foreground.ravel(), minlength=sizes.size)
        keep &= totals >= settings.min_score * sizes
    new_ids = np.zeros(sizes.size, dtype=np.int64)
    new_ids[keep] = np.arange(1, keep.sum() + 1)
    return new_ids[labels]


def assert_same_labels(labels, expected, settings):
    """Threshold seeds: the very same labels. Peak seeds: the same objects, numbered in
    another order (single-seed components first)."""
    if settings.seeds == "threshold":
        np.testing.assert_array_equal(labels, expected)
        return
    np.testing.assert_array_equal(labels > 0, expected > 0)
    pairs = np.unique(np.stack([labels.ravel(), expected.ravel()]), axis=1)
    assert pairs.shape[1] == labels.max() + 1 == expected.max() + 1  # one to one


def _smooth_maps(seed: int, shape=(160, 230)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    foreground = ndi.gaussian_filter(rng.random(shape), 3)
    foreground = (foreground - foreground.min()) / np.ptp(foreground)
    distance = ndi.gaussian_filter(rng.random(shape), 2) * foreground * 2
    return foreground.astype(np.float32), distance.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "settings",
    [
        PostprocessSettings(),
        PostprocessSettings(0.3, 0.6, 1, False),
        PostprocessSettings(0.6, 0.2, 30, True),
        PostprocessSettings(0.45, 0.5, 4, True),
        PostprocessSettings(0.4, seeds="peaks", peak_height=0.3, min_score=0.6),
        PostprocessSettings(0.5, seeds="peaks", peak_height=0.1, min_size=1),
    ],
)
def test_labels_equal_the_plain_whole_field_watershed(seed, settings):
    foreground, distance = _smooth_maps(seed)
    labels = maps_to_labels(foreground, distance, settings)
    expected = plain_maps_to_labels(foreground, distance, settings)
    assert_same_labels(labels, expected, settings)


@pytest.mark.parametrize("seed", range(6))
def test_merged_labels_equal_the_plain_pair_by_pair_merge(seed):
    foreground, distance = _smooth_maps(seed)
    image = ndi.gaussian_filter(np.random.default_rng(seed + 100).random(foreground.shape), 8)
    settings = PostprocessSettings(
        0.4, seeds="peaks", peak_height=0.05, min_size=1, merge_height=0.2, merge_contrast=0.02
    )
    labels = maps_to_labels(foreground, distance, settings, image=image)
    assert (
        labels.max() < maps_to_labels(foreground, distance, replace(settings, merge_height=0)).max()
    )
    expected = plain_maps_to_labels(foreground, distance, settings, image)
    assert_same_labels(labels, expected, settings)


def test_labels_equal_the_plain_watershed_on_the_built_in_model_output(mnfinder_dir):
    import tifffile

    from cellseg_hcs import load_model

    model = load_model("nuclei")
    merges = 0
    for path in sorted((mnfinder_dir / "images").glob("*.tif"))[:2]:
        image = model.prepare(tifffile.imread(path))
        maps = model.predict_maps(tifffile.imread(path), backend="torch")
        settings = model.postprocess_settings
        # the shipped settings: peaks, a score filter, alike fragments merged
        assert settings.seeds == "peaks" and settings.min_score > 0 and settings.merge_height > 0
        labels = maps_to_labels(maps[0], maps[1], settings, image=image)
        assert labels.max() > 0
        expected = plain_maps_to_labels(maps[0], maps[1], settings, image[0])
        assert_same_labels(labels, expected, settings)
        unmerged = maps_to_labels(maps[0], maps[1], replace(settings, merge_height=0))
        merges += int(unmerged.max()) - int(labels.max())
    assert merges > 0  # these images have fragments to merge: the comparison covers merging


@pytest.mark.parametrize("seed", range(10))
def test_fill_holes_equals_scipy_binary_fill_holes(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 80, size=2))
    mask = ndi.gaussian_filter(rng.random(shape), 1.5) > 0.5
    np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
