"""Running the network at another scale: maps come back at the image's size, labels still fit."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.scale import (
    AUTO_MAX_UPSCALE,
    AUTO_MIN_OBJECTS,
    _resize,
    auto_scale,
    median_diameter,
    predict_at_scale,
    scale_for,
)
from cellseg_hcs.settings import parse_diameter


class _Echo:
    """A stand-in runtime whose maps are its input (so resampling is all that is seen)."""

    def __init__(self):
        self.shapes = []

    def predict(self, field):
        self.shapes.append(field.shape)
        return np.concatenate([field, field])


@pytest.mark.parametrize("shape", [(100, 100), (37, 91), (512, 300)])
@pytest.mark.parametrize("scale", [0.5, 0.8, 1.0, 2.0])
def test_maps_come_back_at_the_image_size_after_running_at_scale(shape, scale):
    field = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    runtime = _Echo()
    maps = predict_at_scale(runtime, field, scale)
    assert maps.shape == (2, *shape)
    assert runtime.shapes[0][-2:] == (round(shape[0] * scale), round(shape[1] * scale))


def test_a_smooth_image_survives_a_round_trip_through_half_scale():
    yy, xx = np.mgrid[:200, :240]
    field = (np.sin(yy / 15) * np.cos(xx / 20))[None].astype(np.float32)
    back = _resize(_resize(field, (100, 120)), (200, 240))
    assert np.abs(back - field)[:, 5:-5, 5:-5].max() < 0.05


def test_scale_brings_the_diameter_to_the_working_diameter():
    assert scale_for(60, 30) == 0.5
    assert scale_for(15, 30) == 2.0
    assert scale_for(None, 30) == 1.0
    with pytest.raises(SettingError, match="diameter must be a positive number"):
        scale_for(0, 30)
    with pytest.raises(SettingError, match="number of pixels here, not 'auto'"):
        scale_for("auto", 30)


def test_a_diameter_option_is_a_number_auto_or_native():
    assert parse_diameter("auto") == "auto"
    assert parse_diameter("45") == 45.0 and parse_diameter(12) == 12.0
    assert parse_diameter("native") is None and parse_diameter(None) is None
    for bad in ("big", "-3", "0", "inf", "nan"):
        with pytest.raises(SettingError, match="diameter must be a"):
            parse_diameter(bad)


def _disks(diameter: float, count: int = 9) -> np.ndarray:
    """Label image of ``count`` non-touching disks of one diameter on a grid."""
    step = int(diameter * 1.6) + 2
    side = int(np.ceil(np.sqrt(count)))
    size = side * step
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    centres = [(y, x) for y in range(step // 2, size, step) for x in range(step // 2, size, step)]
    for n, (y, x) in enumerate(centres[:count]):
        labels[(yy - y) ** 2 + (xx - x) ** 2 < (diameter / 2) ** 2] = n + 1
    return labels


def test_median_diameter_of_disks():
    assert median_diameter(_disks(24)) == pytest.approx(24, abs=1.5)
    assert median_diameter(np.zeros((5, 5), int)) == 0.0


@pytest.mark.parametrize("diameter", [24, 30, 44])
def test_auto_leaves_objects_near_the_working_diameter_at_their_scale(diameter):
    scale, measured = auto_scale(_disks(diameter), 30)
    assert scale == 1.0
    assert measured == pytest.approx(diameter, rel=0.05)


@pytest.mark.parametrize("diameter", [15, 20, 50, 90])
def test_auto_brings_far_objects_to_the_working_diameter(diameter):
    scale, measured = auto_scale(_disks(diameter), 30)
    assert scale == pytest.approx(30 / diameter, rel=0.05)


def test_auto_enlarges_at_most_three_times_and_shrinks_at_most_eight_times():
    assert auto_scale(_disks(6), 30)[0] == AUTO_MAX_UPSCALE == 3.0
    assert auto_scale(_disks(400), 30)[0] == 0.125


def test_auto_leaves_fields_with_too_few_objects_to_measure_alone():
    assert auto_scale(np.zeros((50, 50), np.int32), 30) == (1.0, 0.0)
    scale, measured = auto_scale(_disks(90, count=AUTO_MIN_OBJECTS - 1), 30)
    assert scale == 1.0 and measured == pytest.approx(90, rel=0.05)
    # ... unless several fields together hold enough (the plate run pools its first fields).
    pooled = [_disks(90, count=AUTO_MIN_OBJECTS // 2), _disks(90, count=AUTO_MIN_OBJECTS // 2)]
    assert auto_scale(pooled, 30)[0] == pytest.approx(1 / 3, rel=0.05)


def test_the_examples_in_the_scaling_module_hold():
    import doctest

    from cellseg_hcs.field import scale as scaling

    assert doctest.testmod(scaling, optionflags=doctest.ELLIPSIS).failed == 0


def test_segment_with_the_objects_diameter_finds_the_same_nuclei(mnfinder_dir):
    import tifffile

    import cellseg_hcs as cs

    model = cs.load_model("nuclei")
    image_path = sorted((mnfinder_dir / "images").glob("*MCC13*"))[0]
    image = tifffile.imread(image_path)
    native = model.segment(image)
    resampled = model.segment(image, diameter=model.info.working_diameter * 1.25)
    assert resampled.shape == native.shape
    assert abs(int(resampled.max()) - int(native.max())) <= max(2, 0.1 * native.max())


def _magnified(mnfinder_dir, factor: float):
    """A real mnfinder image and its nuclei labels, magnified as a higher-power objective would."""
    import tifffile
    from skimage.transform import rescale

    name = sorted((mnfinder_dir / "images").glob("*.tif"))[0].name
    image = tifffile.imread(mnfinder_dir / "images" / name).astype(np.float32)
    labels = tifffile.imread(mnfinder_dir / "nuclei_labels" / name)
    if factor == 1:
        return image, labels
    return (
        rescale(image, factor, order=1, preserve_range=True, anti_aliasing=True),
        rescale(labels, factor, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32),
    )


@pytest.fixture(scope="module")
def nuclei():
    import cellseg_hcs as cs

    return cs.load_model("nuclei")


def test_auto_finds_nuclei_that_a_larger_magnification_makes_the_model_miss(nuclei, mnfinder_dir):
    from cellseg_hcs.training.metrics import evaluate_pairs

    image, truth = _magnified(mnfinder_dir, 2.5)
    native = evaluate_pairs([(truth, nuclei.segment(image, diameter=None))])["f1"]
    auto = evaluate_pairs([(truth, nuclei.segment(image))])["f1"]  # "auto" is the default
    assert auto >= 0.9
    assert auto >= native + 0.03


def test_auto_on_images_like_the_training_data_is_the_native_result(nuclei, mnfinder_dir):
    image, _ = _magnified(mnfinder_dir, 1)
    np.testing.assert_array_equal(nuclei.segment(image), nuclei.segment(image, diameter=None))
