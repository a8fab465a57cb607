"""A model that ran on onnxruntime once runs from its cached export without PyTorch.

A model file's metadata and weights are read without torch; its ONNX export is cached under
the model's hash. So the second run of a model on onnxruntime (asked for, or chosen by
``auto`` from the speeds measured and remembered on a machine without an NVIDIA GPU) never
imports PyTorch, and gives the same labels.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from cellseg_hcs.model.model import Model, ModelInfo, load_model
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime import registry
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
results = segment_files(sys.argv[1:3], sys.argv[3], model=sys.argv[4], backend=sys.argv[5],
                        progress=False)
print("torch imported:", "torch" in sys.modules)
"""


def _second_run(images, out, model_file, backend, env=None):
    done = subprocess.run(
        [sys.executable, "-c", SECOND_RUN, *map(str, images), str(out), str(model_file), backend],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return done.stdout


def test_second_segment_runs_without_importing_torch_and_writes_the_same_labels(
    model_file, mnfinder_dir, tmp_path
):
    images = _images(mnfinder_dir)
    first = segment_files(
        images, tmp_path / "first", model=str(model_file), backend="onnxruntime", progress=False
    )
    assert "torch imported: False" in _second_run(
        images, tmp_path / "second", model_file, "onnxruntime"
    )
    for result in first:
        again = tmp_path / "second" / result.labels.name
        np.testing.assert_array_equal(tifffile.imread(again), tifffile.imread(result.labels))


def test_loading_a_model_file_reads_its_metadata_and_hash_without_torch(model_file):
    code = (
        "import sys; from cellseg_hcs.model.model import load_model; "
        f"m = load_model({str(model_file)!r}); "
        "print(m.hash, m.multiple, m.info.in_channels, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    model = load_model(model_file)
    assert done.stdout.split() == [model.hash, "8", "1", "False"]
    assert model.network.multiple == model.multiple == 8  # the network agrees, once built


def test_the_hash_read_without_torch_is_the_hash_of_the_built_network(model_file):
    light = load_model(model_file)
    light_hash = light.hash
    light.network  # noqa: B018 - builds the network: the hash now comes from its weights
    assert light.hash == light_hash


def test_the_shipped_model_keeps_its_hash():
    """The model card and earlier runs' manifests name the shipped model by this hash."""
    model = load_model("nuclei")
    assert model.hash == "df92b4544262fb05"
    model.network  # noqa: B018
    assert model.hash == "df92b4544262fb05"


def test_a_changed_model_file_gets_a_new_hash_and_export(model_file, mnfinder_dir, tmp_path):
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    before = load_model(model_file).hash
    other = Model(
        UNet(in_channels=1, out_channels=2, depth=2, width=4),
        ModelInfo(network={"depth": 2, "width": 4}),
    )
    other.save(model_file)
    assert load_model(model_file).hash == other.hash != before
    exports = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    segment_files(
        _images(mnfinder_dir),
        tmp_path / "out2",
        model=str(model_file),
        backend="onnxruntime",
        progress=False,
    )
    assert len(sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))) == len(exports) + 1


def test_auto_runs_without_torch_where_onnxruntime_was_measured_fastest(
    model_file, mnfinder_dir, tmp_path, monkeypatch
):
    model = load_model(model_file)
    segment_files(
        _images(mnfinder_dir), tmp_path / "o", model=model, backend="onnxruntime", progress=False
    )
    monkeypatch.setattr(registry, "no_cuda_gpu_here", lambda: True)
    speeds = {"onnxruntime": 5.0, "torch": 2.0}
    monkeypatch.setattr(registry, "cached_cpu_speeds", lambda model, names: speeds)
    name, reason = registry.choose_backend("auto", None, model)
    assert name == "onnxruntime" and "no NVIDIA GPU on this machine" in reason
    speeds.update(torch=9.0)
    assert registry.choose_backend("auto", None, model)[0] == "torch"


def test_auto_on_a_machine_with_a_gpu_device_asks_every_backend(model_file, monkeypatch):
    asked = []
    monkeypatch.setattr(registry, "no_cuda_gpu_here", lambda: False)
    monkeypatch.setattr(registry, "cached_cpu_speeds", lambda model, names: {"onnxruntime": 1})
    original = registry.backend_report
    monkeypatch.setattr(registry, "backend_report", lambda: asked.append(1) or original())
    registry.choose_backend("auto", None, load_model(model_file))
    assert asked, "with an NVIDIA device on the machine, the GPU backends must be asked"


def test_the_remembered_speeds_of_auto_reach_a_new_process_without_torch(
    model_file, mnfinder_dir, tmp_path
):
    import os

    from cellseg_hcs.io.atomic import write_atomic_json

    if not registry.no_cuda_gpu_here():
        pytest.skip("this machine has an NVIDIA GPU: auto rightly asks the GPU backends")
    images = _images(mnfinder_dir)
    model = load_model(model_file)
    segment_files(images, tmp_path / "first", model=model, backend="onnxruntime", progress=False)
    # As if onnxruntime had been measured fastest here (the measurement itself is tested in
    # test_runtime.py): the remembered answer is all a new process needs.
    candidates = registry.AUTO_CPU_CANDIDATES
    write_atomic_json(
        registry._choice_cache_path(),
        {registry._choice_cache_key(model, candidates): {"onnxruntime": 5.0, "torch": 1.0}},
    )
    output = _second_run(images, tmp_path / "second", model_file, "auto", env=dict(os.environ))
    assert "torch imported: False" in output
