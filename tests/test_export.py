"""ONNX export: dynamic batch, height and width, and the same maps as torch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tifffile
import torch
from click.testing import CliRunner

from cellseg_hcs.cli import main
from cellseg_hcs.errors import SettingError
from cellseg_hcs.model.model import Model, ModelInfo, load_model
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime.export import export_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stem2_model() -> Model:
    """A small random UNet with the real model's space-to-depth stem."""
    torch.manual_seed(1)
    options = {"in_channels": 1, "out_channels": 2, "depth": 4, "width": 4, "stem": 2}
    model = Model(UNet(**options), ModelInfo(network=options))
    for module in model.network.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def stem2_onnx(stem2_model, tmp_path_factory):
    return export_model(stem2_model, tmp_path_factory.mktemp("export") / "model.onnx")


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch_probabilities(model: Model, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model.network(torch.from_numpy(batch))).numpy()


@pytest.mark.parametrize(
    "shape", [(1, 1, 64, 64), (3, 1, 96, 160), (2, 1, 100, 77), (1, 1, 37, 250)]
)
def test_exported_onnx_takes_any_batch_height_and_width_and_equals_torch(
    stem2_model, stem2_onnx, shape
):
    batch = np.random.default_rng(0).random(shape, dtype=np.float32)
    (probabilities,) = _session(stem2_onnx).run(None, {"image": batch})
    assert probabilities.shape == (shape[0], 2, *shape[2:])
    np.testing.assert_allclose(probabilities, _torch_probabilities(stem2_model, batch), atol=1e-5)


def test_export_command_writes_onnx_whose_maps_equal_torch_within_1e_4_on_real_images(
    tmp_path, mnfinder_dir
):
    out = tmp_path / "nuclei.onnx"
    result = CliRunner().invoke(
        main, ["export", "--model", "nuclei", "--format", "onnx", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(str(out))
    model = load_model("nuclei")
    session = _session(out)
    for path in sorted((mnfinder_dir / "images").glob("*.tif")):
        field = model.prepare(tifffile.imread(path))[None]
        (probabilities,) = session.run(None, {"image": field})
        np.testing.assert_allclose(
            probabilities, _torch_probabilities(model, field), atol=1e-4, err_msg=path.name
        )


def test_exported_onnx_names_the_model_it_came_from(stem2_model, stem2_onnx):
    proto = onnx.load(str(stem2_onnx))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata["cellseg_hcs.model_hash"] == stem2_model.hash
    assert metadata["cellseg_hcs.outputs"] == "foreground,distance"
    assert metadata["cellseg_hcs.multiple"] == "16"


def test_export_to_an_unknown_format_is_refused_with_the_choices(stem2_model, tmp_path):
    with pytest.raises(SettingError, match="choose from onnx"):
        export_model(stem2_model, tmp_path / "model.bin", "tflite")
