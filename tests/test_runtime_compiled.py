"""A model that ran on onnxruntime once runs from its cached export without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from cellseg_hcs.model.model import Model, ModelInfo
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime import compiled, registry
from cellseg_hcs.runtime.compiled import compiled_model
from cellseg_hcs.segment import segment_files

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    """A small stem-2 model saved to a file, and a private cache folder."""
    monkeypatch.setenv("CELLSEG_HCS_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "stem": 2}
    model = Model(UNet(**options), ModelInfo(network=options))
    model.info.postprocess.update(foreground_threshold=0.52, seed_threshold=0.5, min_size=4)
    return model.save(tmp_path / "small.safetensors")


def _images(mnfinder_dir):
    return sorted((mnfinder_dir / "images").glob("*.tif"))[:2]


SECOND_RUN = """
import sys
from cellseg_hcs.segment import segment_files
results = segment_files(sys.argv[1:3], sys.argv[3], model=sys.argv[4], backend="onnxruntime",
                        progress=False)
print("torch imported:", "torch" in sys.modules)
"""


def test_second_segment_runs_without_importing_torch_and_writes_the_same_labels(
    model_file, mnfinder_dir, tmp_path
):
    images = _images(mnfinder_dir)
    first = segment_files(
        images, tmp_path / "first", model=str(model_file), backend="onnxruntime", progress=False
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SECOND_RUN,
            *map(str, images),
            str(tmp_path / "second"),
            str(model_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "torch imported: False" in done.stdout
    for result in first:
        again = tmp_path / "second" / result.labels.name
        np.testing.assert_array_equal(tifffile.imread(again), tifffile.imread(result.labels))


def test_a_changed_model_file_is_loaded_again_not_taken_from_the_cache(
    model_file, mnfinder_dir, tmp_path
):
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    assert compiled_model(str(model_file), "onnxruntime") is not None
    other = Model(
        UNet(in_channels=1, out_channels=2, depth=2, width=4),
        ModelInfo(network={"depth": 2, "width": 4}),
    )
    other.save(model_file)
    assert compiled_model(str(model_file), "onnxruntime") is None


def test_compiled_model_prepares_fields_and_makes_labels_exactly_like_the_model(
    model_file, mnfinder_dir, tmp_path
):
    model = Model.load(model_file)
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    light = compiled_model(str(model_file), "onnxruntime")
    assert light.hash == model.hash and light.network.multiple == model.network.multiple
    image = tifffile.imread(_images(mnfinder_dir)[0])
    np.testing.assert_array_equal(light.prepare(image), model.prepare(image))
    maps = model.predict_maps(image, backend="torch")
    np.testing.assert_array_equal(light.labels_from_maps(maps), model.labels_from_maps(maps))
    joining = {"seeds": "peaks", "peak_height": 0.05, "merge_height": 0.2}  # reads the image
    x = model.prepare(image)
    np.testing.assert_array_equal(
        light.labels_from_maps(maps, x, **joining), model.labels_from_maps(maps, x, **joining)
    )


def test_auto_takes_the_compiled_path_only_where_onnxruntime_was_measured_fastest(
    model_file, mnfinder_dir, tmp_path, monkeypatch
):
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    monkeypatch.setattr(compiled, "no_cuda_gpu_here", lambda: True)
    speeds = {"onnxruntime": 5.0, "torch": 2.0}
    monkeypatch.setattr(registry, "cached_cpu_speeds", lambda model, names: speeds)
    assert compiled_model(str(model_file), "auto") is not None
    speeds.update(torch=9.0)
    assert compiled_model(str(model_file), "auto") is None
    monkeypatch.setattr(registry, "cached_cpu_speeds", lambda model, names: None)
    assert compiled_model(str(model_file), "auto") is None


def test_a_machine_with_an_nvidia_gpu_or_a_gpu_device_never_takes_the_compiled_path(
    model_file, mnfinder_dir, tmp_path, monkeypatch
):
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    monkeypatch.setattr(compiled, "no_cuda_gpu_here", lambda: False)
    monkeypatch.setattr(registry, "cached_cpu_speeds", lambda model, names: {"onnxruntime": 1})
    assert compiled_model(str(model_file), "auto") is None
    assert compiled_model(str(model_file), "onnxruntime", "cuda") is None
    assert compiled_model(str(model_file), "torch") is None


def test_the_index_names_the_file_its_digest_and_the_export(model_file, mnfinder_dir, tmp_path):
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    index = json.loads((tmp_path / "cache" / "onnx" / compiled.INDEX).read_text())
    entry = index[str(model_file.resolve())]
    assert entry["path"] == str(model_file.resolve())
    assert len(entry["sha256"]) == 64 and entry["onnx"].endswith(".onnx")


def test_the_same_relative_model_path_in_two_folders_never_gives_the_other_model(
    model_file, mnfinder_dir, tmp_path, monkeypatch
):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    model_file.rename(first / "m.safetensors")
    other = Model(
        UNet(in_channels=1, out_channels=2, depth=2, width=4),
        ModelInfo(network={"depth": 2, "width": 4}),
    )
    other.save(second / "m.safetensors")
    monkeypatch.chdir(first)
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model="m.safetensors",
        backend="onnxruntime",
        progress=False,
    )
    assert compiled_model("m.safetensors", "onnxruntime").source == str(first / "m.safetensors")
    monkeypatch.chdir(second)
    assert compiled_model("m.safetensors", "onnxruntime") is None
