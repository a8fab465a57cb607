"""Running the network at another scale: maps come back at the image's size, labels still fit."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_hcs.errors import SettingError
from cellseg_hcs.runtime.scaling import _resize, predict_at_scale, scale_for


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
