"""The inference runtime: one backend interface, the registry, ``auto``, TensorRT's edges."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cellseg_hcs.cli import main
from cellseg_hcs.errors import BackendUnavailable, SettingError
from cellseg_hcs.model.model import Model, ModelInfo
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime import (
    BACKENDS,
    Availability,
    Runtime,
    backend_report,
    choose_backend,
    registry,
)
from cellseg_hcs.runtime.base import default_cpu_threads
from cellseg_hcs.runtime.tensorrt_backend import (
    ShapeProfile,
    TensorRTBackend,
    cached_engine,
    choose_precision,
    choose_profile,
    engine_cache_key,
    import_tensorrt,
)
from cellseg_hcs.runtime.tiling import TileGrid

CPU_BACKENDS = [name for name, a in backend_report().items() if a.ok and "cpu" in a.devices]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache folder (ONNX exports, engines, auto choices)."""
    monkeypatch.setenv("CELLSEG_HCS_CACHE", str(tmp_path / "cache"))


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def stem2_model() -> Model:
    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "stem": 2}
    return Model(UNet(**options), ModelInfo(network=options))


# ---------------------------------------------------------------- one interface


def test_onnxruntime_and_torch_are_both_available_on_this_cpu():
    assert {"onnxruntime", "torch"} <= set(CPU_BACKENDS)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_every_backend_is_made_through_load_and_returns_probabilities(stem2_model, name):
    backend = BACKENDS[name].load(stem2_model, "cpu")
    batch = np.random.default_rng(0).random((2, 1, 48, 80), dtype=np.float32)
    probabilities = backend.predict(batch)
    assert probabilities.shape == (2, 2, 48, 80) and probabilities.dtype == np.float32
    assert 0 <= probabilities.min() and probabilities.max() <= 1
    assert {"backend", "device", "precision", "version"} <= set(backend.describe())


def test_onnxruntime_and_torch_runtimes_give_the_same_maps_on_an_odd_sized_field(stem2_model):
    field = np.random.default_rng(1).random((1, 333, 517), dtype=np.float32)
    maps = {
        name: Runtime(stem2_model, name, "cpu", tile_size=256, overlap=32).predict(field)
        for name in ("onnxruntime", "torch")
    }
    np.testing.assert_allclose(maps["onnxruntime"], maps["torch"], atol=1e-5)


def test_runtime_on_a_field_smaller_than_the_network_multiple_gives_full_size_maps(stem2_model):
    field = np.random.default_rng(2).random((1, 5, 9), dtype=np.float32)
    for name in ("onnxruntime", "torch"):
        assert Runtime(stem2_model, name, "cpu").predict(field).shape == (2, 5, 9)


def test_cpu_backends_use_one_thread_per_usable_core_unless_told(stem2_model, monkeypatch):
    monkeypatch.delenv("CELLSEG_HCS_THREADS")
    backend = BACKENDS["onnxruntime"].load(stem2_model, "cpu")
    assert backend.describe()["threads"] == str(len(os.sched_getaffinity(0)))
    monkeypatch.setenv("CELLSEG_HCS_THREADS", "1")
    assert default_cpu_threads() == 1
    BACKENDS["torch"].load(stem2_model, "cpu")
    assert torch.get_num_threads() == 1


def test_impossible_tiling_settings_are_refused_in_one_sentence(stem2_model):
    with pytest.raises(SettingError, match="overlap"):
        Runtime(stem2_model, "torch", "cpu", tile_size=64, overlap=40)


# ---------------------------------------------------------------- choosing a backend


def test_unknown_backend_names_the_choices():
    with pytest.raises(SettingError, match="auto, tensorrt, torch, onnxruntime"):
        choose_backend("openvino")


def test_auto_on_this_cpu_measures_the_cpu_backends_and_says_which_won_and_why(stem2_model):
    name, reason = choose_backend("auto", None, stem2_model)
    assert name in ("onnxruntime", "torch")
    assert "TensorRT is not installed" in reason
    assert f"{name} measured fastest" in reason
    assert "onnxruntime" in reason and "torch" in reason


def test_auto_measures_once_per_model_and_remembers_the_choice_on_disk(stem2_model, monkeypatch):
    first = choose_backend("auto", "cpu", stem2_model)

    def no_second_measurement(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(registry, "measure_backend", no_second_measurement)
    assert choose_backend("auto", "cpu", stem2_model) == first
    other = Model(
        UNet(in_channels=1, out_channels=2, depth=2, width=4),
        ModelInfo(network={"depth": 2, "width": 4}),
    )
    with pytest.raises(AssertionError, match="measured again"):
        choose_backend("auto", "cpu", other)


def _pretend(monkeypatch, name: str, availability: Availability) -> None:
    monkeypatch.setattr(BACKENDS[name], "availability", classmethod(lambda cls: availability))


def test_auto_takes_tensorrt_first_when_it_can_run_on_a_gpu(monkeypatch):
    _pretend(monkeypatch, "tensorrt", Availability(True, version="10.3", devices=("cuda:0",)))
    _pretend(monkeypatch, "torch", Availability(True, version="2", devices=("cpu", "cuda:0")))
    name, reason = choose_backend("auto")
    assert name == "tensorrt" and "CUDA GPU" in reason


def test_auto_falls_back_to_torch_cuda_when_tensorrt_is_missing_and_says_why(monkeypatch):
    _pretend(monkeypatch, "torch", Availability(True, version="2", devices=("cpu", "cuda:0")))
    name, reason = choose_backend("auto")
    assert name == "torch" and "CUDA GPU" in reason
    _pretend(monkeypatch, "torch", Availability(True, version="2", devices=("cpu",)))
    name, reason = choose_backend("auto")
    assert name == "onnxruntime"
    assert "tensorrt: TensorRT is not installed" in reason and "torch: no CUDA GPU" in reason


def test_auto_with_device_cpu_never_takes_a_gpu_backend(monkeypatch):
    _pretend(monkeypatch, "tensorrt", Availability(True, version="10.3", devices=("cuda:0",)))
    assert choose_backend("auto", "cpu")[0] in ("onnxruntime", "torch")


def test_auto_asked_for_cuda_without_a_gpu_says_why_in_one_sentence():
    with pytest.raises(BackendUnavailable) as caught:
        choose_backend("auto", "cuda")
    message = str(caught.value)
    assert "no backend can use a CUDA GPU" in message and "\n" not in message


def test_torch_asked_for_cuda_without_a_gpu_says_why(stem2_model):
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        Runtime(stem2_model, "torch", "cuda")


# ---------------------------------------------------------------- TensorRT, around the edges


def test_backend_tensorrt_without_tensorrt_says_why_in_one_sentence():
    with pytest.raises(BackendUnavailable) as caught:
        choose_backend("tensorrt")
    message = str(caught.value)
    assert "TensorRT is not installed" in message
    assert message.count(". ") == 0 and "\n" not in message


def test_tensorrt_whose_libraries_fail_to_load_is_reported_not_raised(monkeypatch):
    class BrokenLibraries:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorrt":
                raise OSError("libnvinfer.so.10: cannot open shared object file")
            return None

    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenLibraries(), *sys.meta_path])
    availability = TensorRTBackend.availability()
    assert not availability.ok
    assert "libraries do not load" in availability.reason and "libnvinfer" in availability.reason


def test_segment_with_backend_tensorrt_exits_2_with_one_line_and_no_traceback(
    tmp_path, mnfinder_dir
):
    image = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    result = CliRunner().invoke(
        main, ["segment", str(image), "--out", str(tmp_path / "out"), "--backend", "tensorrt"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert lines == [
        "Error: backend 'tensorrt' cannot run here: TensorRT is not installed "
        "(it needs an NVIDIA GPU and pip install 'cellseg-hcs[gpu]')."
    ]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_engine_cache_key_changes_with_each_of_its_five_parts():
    profile = choose_profile(1, 512, 4, 16)
    base = ("28853e5b02c8d942", (8, 6), "10.3.0", "fp16", profile)
    variants = [
        ("0123456789abcdef", *base[1:]),
        (base[0], (8, 9), *base[2:]),
        (*base[:2], "10.4.0", *base[3:]),
        (*base[:3], "fp32", base[4]),
        (*base[:4], choose_profile(1, 1024, 4, 16)),
        (*base[:4], choose_profile(1, 512, 8, 16)),
    ]
    keys = {engine_cache_key(*parts) for parts in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    assert all("/" not in key and " " not in key for key in keys)


@pytest.mark.parametrize(
    "tile_size,batch_size,multiple", [(512, 4, 16), (500, 2, 32), (1024, 1, 16), (256, 8, 8)]
)
def test_shape_profile_admits_every_batch_the_runtime_sends(tile_size, batch_size, multiple):
    profile = choose_profile(1, tile_size, batch_size, multiple)
    assert profile.min <= profile.opt <= profile.max
    for shape in [(5, 9), (100, 3000), (2160, 2160), (tile_size, tile_size), (777, 1301)]:
        grid = TileGrid(shape, tile_size, 64 if tile_size > 128 else 16, multiple)
        height, width = (-(-side // multiple) * multiple for side in grid.tile_shape)
        for batch in range(1, batch_size + 1):
            assert profile.admits((batch, 1, height, width)), (shape, batch)
    assert not profile.admits((batch_size + 1, 1, multiple, multiple))


def test_fp16_only_on_gpus_with_fast_half_precision_unless_asked():
    assert choose_precision((7, 0)) == "fp16" and choose_precision((9, 0)) == "fp16"
    assert choose_precision((6, 1)) == "fp32"
    assert choose_precision((8, 6), "fp32") == "fp32"
    with pytest.raises(BackendUnavailable, match="fp16 or fp32"):
        choose_precision((8, 6), "int8")


def _stand_in_tensorrt(events: list[str]) -> types.SimpleNamespace:
    """Just enough of TensorRT's Runtime API to count deserializations (no GPU needed)."""

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, payload):
            events.append(f"deserialize {payload.decode()}")
            return types.SimpleNamespace(payload=payload)

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    return types.SimpleNamespace(Runtime=Runtime, Logger=Logger)


def test_engine_is_built_once_kept_on_disk_and_deserialized_once_per_process(tmp_path, monkeypatch):
    from cellseg_hcs.runtime import tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, "_ENGINES", {})
    events: list[str] = []
    trt = _stand_in_tensorrt(events)
    path = (
        tmp_path
        / "engines"
        / engine_cache_key(
            "abc",
            (8, 6),
            "10.3",
            "fp16",
            ShapeProfile((1, 1, 16, 16), (4, 1, 512, 512), (4, 1, 512, 512)),
        )
    )

    def build():
        events.append("build")
        return b"engine-1"

    first = cached_engine(trt, path, build)
    assert cached_engine(trt, path, build) is first
    assert events == ["build", "deserialize engine-1"]
    assert path.read_bytes() == b"engine-1"
    monkeypatch.setattr(tensorrt_backend, "_ENGINES", {})  # a new process: no rebuild
    cached_engine(trt, path, build)
    assert events == ["build", "deserialize engine-1", "deserialize engine-1"]


def test_import_tensorrt_turns_a_missing_package_into_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match=r"^TensorRT is not installed .*\.$"):
        import_tensorrt()


# ---------------------------------------------------------------- cellseg-hcs info


def test_info_prints_version_models_and_every_backend_with_version_or_reason():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("cellseg-hcs ")
    assert "nuclei" in result.output
    for name, availability in backend_report().items():
        line = next(
            line for line in result.output.splitlines() if line.strip().startswith(name + " ")
        )
        expected = availability.version if availability.ok else availability.reason
        assert expected in line
    assert "auto: " in result.output
