"""Test-time flips: each tile's maps averaged over flips and rotations of the tile."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner

import cellseg_hcs as cs
from cellseg_hcs.cli import main
from cellseg_hcs.errors import SettingError
from cellseg_hcs.model.model import Model, ModelInfo
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime import Runtime
from cellseg_hcs.settings import FieldSettings
from cellseg_hcs.training.metrics import InstanceScores, match_instances

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def untrained(random_stem2_model):
    """A random network: it sees orientation, as no trained one should."""
    return random_stem2_model


@pytest.fixture(scope="module")
def field() -> np.ndarray:
    # One tile, each side a multiple of the network's: turning it needs no padding.
    return np.random.default_rng(0).random((1, 64, 48), dtype=np.float32)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_with_all_eight_flips_the_maps_of_a_turned_field_are_the_turned_maps(
    untrained, field, backend
):
    once = Runtime(untrained, backend, "cpu")
    eight = Runtime(untrained, backend, "cpu", flips=8)
    turned = np.rot90(field, 1, axes=(1, 2)).copy()
    # Run once, a random network's maps depend on the orientation ...
    assert np.abs(once.predict(turned) - np.rot90(once.predict(field), 1, axes=(1, 2))).max() > 1e-3
    # ... averaged over the eight symmetries of a square, they do not.
    np.testing.assert_allclose(
        eight.predict(turned), np.rot90(eight.predict(field), 1, axes=(1, 2)), atol=1e-5
    )


def test_four_flips_make_the_maps_of_a_mirrored_field_the_mirrored_maps(untrained, field):
    four = Runtime(untrained, "onnxruntime", "cpu", flips=4)
    for axis in (1, 2):
        mirrored = np.flip(field, axis).copy()
        np.testing.assert_allclose(
            four.predict(mirrored), np.flip(four.predict(field), axis), atol=1e-5
        )


def test_flipped_maps_are_the_mean_of_the_networks_maps_over_the_flips(untrained, field):
    network = Runtime(untrained, "torch", "cpu").backend
    batch = field[None]
    expected = (
        network.predict(batch)
        + network.predict(batch[..., ::-1].copy())[..., ::-1]
        + network.predict(batch[..., ::-1, :].copy())[..., ::-1, :]
        + network.predict(batch[..., ::-1, ::-1].copy())[..., ::-1, ::-1]
    ) / 4
    flipped = Runtime(untrained, "torch", "cpu", flips=4).predict(field)
    np.testing.assert_allclose(flipped, expected[0], atol=1e-6)
    assert 0 <= flipped.min() and flipped.max() <= 1


def test_flips_work_on_tiled_fields_of_any_shape(untrained):
    field = np.random.default_rng(1).random((1, 150, 97), dtype=np.float32)
    maps = Runtime(untrained, "onnxruntime", "cpu", tile_size=64, overlap=8, flips=8)
    assert maps.predict(field).shape == (2, 150, 97)
    assert maps.describe()["flips"] == "8"


def test_one_flip_is_the_network_run_once(untrained, field):
    np.testing.assert_array_equal(
        Runtime(untrained, "torch", "cpu", flips=1).predict(field),
        Runtime(untrained, "torch", "cpu").backend.predict(field[None])[0],
    )


def test_unless_told_a_model_runs_with_its_own_flips(tmp_path):
    assert FieldSettings().flips is None and "flips" not in FieldSettings().runtime_options
    assert cs.load_model("nuclei").info.flips == 1
    assert cs.load_model("micronuclei").info.flips == 8  # advised on its card
    micronuclei = cs.load_model("micronuclei")
    assert micronuclei.pipeline(FieldSettings(model="micronuclei")).runtime.flips == 8
    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 2, "width": 4}
    model = Model(UNet(**options), ModelInfo(network=options, flips=4))
    model.save(tmp_path / "four.safetensors")
    again = cs.load_model(tmp_path / "four.safetensors")
    assert again.info.flips == 4
    assert again.runtime("torch", "cpu").flips == 4
    assert again.runtime("torch", "cpu", **FieldSettings(flips=1).runtime_options).flips == 1
    assert again.runtime("torch", "cpu", **FieldSettings(flips=8).runtime_options).flips == 8


@pytest.mark.parametrize("flips", [0, 3, 16, True, "8"])
def test_flips_other_than_1_2_4_8_are_refused_in_one_sentence(untrained, flips):
    with pytest.raises(SettingError, match=r"^flips .* must be one of 1, 2, 4, 8\.$"):
        FieldSettings(flips=flips)
    with pytest.raises(SettingError, match="flips"):
        Runtime(untrained, "torch", "cpu", flips=flips)


def test_segment_offers_flips_and_its_labels_still_match_the_hand_drawn_nuclei(
    tmp_path, mnfinder_dir
):
    help_text = CliRunner().invoke(main, ["segment", "--help"]).output
    assert "--flips" in help_text and "rotations" in help_text
    image = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    result = CliRunner().invoke(
        main, ["segment", str(image), "--out", str(tmp_path), "--flips", "4"]
    )
    assert result.exit_code == 0, result.output
    labels = tifffile.imread(tmp_path / f"{image.stem}_labels.tif")
    truth = tifffile.imread(mnfinder_dir / "nuclei_labels" / image.name)
    assert InstanceScores(matches=[match_instances(truth, labels)]).matching_summary()["f1"] >= 0.9
    bad = CliRunner().invoke(main, ["segment", str(image), "--out", str(tmp_path), "--flips", "3"])
    assert bad.exit_code == 2 and "flips 3 must be one of 1, 2, 4, 8." in bad.output


def test_the_python_api_takes_flips_like_any_other_setting(mnfinder_dir):
    image = tifffile.imread(sorted((mnfinder_dir / "images").glob("*.tif"))[0])
    model = cs.load_model("nuclei")
    settings = FieldSettings(flips=2)
    pipeline = model.pipeline(settings)
    assert pipeline.runtime.flips == 2
    assert pipeline.run(image).labels.max() > 10
    assert settings.replace(flips=8).flips == 8


def test_model_segment_takes_flips_and_the_other_field_settings_as_keywords(mnfinder_dir):
    image = tifffile.imread(sorted((mnfinder_dir / "images").glob("*.tif"))[0])
    model = cs.load_model("nuclei")
    expected = model.pipeline(FieldSettings(flips=2, tile_size=256)).run(image).labels
    labels = model.segment(image, flips=2, tile_size=256, min_score=0.9)
    np.testing.assert_array_equal(labels, expected)
    with pytest.raises(SettingError, match="flips 3 must be one of 1, 2, 4, 8."):
        model.segment(image, flips=3)
