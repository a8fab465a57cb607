"""Fast maps-to-labels gives the labels of the plain whole-field watershed (same objects)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from cellseg_hcs.postprocess import PostprocessSettings, fill_holes, maps_to_labels

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def plain_maps_to_labels(foreground, distance, settings):
    """The specification: one seeded watershed over the whole field, orphans kept."""
    mask = foreground > settings.foreground_threshold
    if settings.fill_holes:
        mask = ndi.binary_fill_holes(mask)
    if settings.seeds == "peaks":  # h-maxima of the distance map inside the foreground
        masked = np.where(mask, distance, 0).astype(np.float32)
        cross = ndi.generate_binary_structure(2, 1)
        peaks = h_maxima(masked, settings.peak_height, footprint=cross).astype(bool)
        seeds, n_seeds = ndi.label(peaks & mask)
    else:
        seeds, n_seeds = ndi.label((distance > settings.seed_threshold) & mask)
    components, n_components = ndi.label(mask)
    seeded = np.zeros(n_components + 1, dtype=bool)
    seeded[np.unique(components[seeds > 0])] = True
    orphan_ids, _ = ndi.label(~seeded[components] & mask)
    seeds = np.where(orphan_ids > 0, orphan_ids + n_seeds, seeds)
    labels = watershed(-distance, seeds, mask=mask)
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
@pytest.mark.parametrize("settings", [PostprocessSettings(),
                                      PostprocessSettings(0.3, 0.6, 1, False),
                                      PostprocessSettings(0.6, 0.2, 30, True),
                                      PostprocessSettings(0.45, 0.5, 4, True),
                                      PostprocessSettings(0.4, seeds="peaks", peak_height=0.3,
                                                          min_score=0.6),
                                      PostprocessSettings(0.5, seeds="peaks", peak_height=0.1,
                                                          min_size=1)])
def test_labels_equal_the_plain_whole_field_watershed(seed, settings):
    foreground, distance = _smooth_maps(seed)
    labels = maps_to_labels(foreground, distance, settings)
    expected = plain_maps_to_labels(foreground, distance, settings)
    assert_same_labels(labels, expected, settings)


def test_labels_equal_the_plain_watershed_on_the_built_in_model_output(mnfinder_dir):
    import tifffile

    from cellseg_hcs import load_model

    model = load_model("nuclei")
    for path in sorted((mnfinder_dir / "images").glob("*.tif"))[:2]:
        maps = model.predict_maps(tifffile.imread(path), backend="torch")
        settings = model.postprocess_settings
        assert settings.seeds == "peaks" and settings.min_score > 0  # the shipped settings
        labels = maps_to_labels(maps[0], maps[1], settings)
        assert labels.max() > 0
        assert_same_labels(labels, plain_maps_to_labels(maps[0], maps[1], settings), settings)


@pytest.mark.parametrize("seed", range(10))
def test_fill_holes_equals_scipy_binary_fill_holes(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 80, size=2))
    mask = ndi.gaussian_filter(rng.random(shape), 1.5) > 0.5
    np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
