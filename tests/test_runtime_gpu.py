"""The GPU paths, driven with stand-ins for TensorRT and CUDA (none on these machines).

Each test states what the GPU code must do with the real libraries (issue #20's findings):
TensorRT 10 and 11 both build, other versions are refused; ``auto`` falls back and remembers
why; the backends use their own stream, device, context lock and the engine's data types;
the torch backend leaves the model's network alone; onnxruntime's silent CPU fallback is
caught. The stand-ins are in ``gpu_stand_ins.py``.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
import torch
from gpu_stand_ins import (
    DataType,
    RecordingTorch,
    Transfers,
    at_once,
    engine_output,
    tensorrt_module,
)

from cellseg_hcs.errors import BackendUnavailable
from cellseg_hcs.model.model import Model, ModelInfo
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime import BACKENDS, Availability, Runtime, failures, torch_backend
from cellseg_hcs.runtime import tensorrt_backend as trt_backend
from cellseg_hcs.runtime.cuda import CudaTransfers
from cellseg_hcs.runtime.export import onnx_bytes
from cellseg_hcs.runtime.onnxruntime_backend import OnnxRuntimeBackend
from cellseg_hcs.runtime.tensorrt_backend import (
    TensorRTBackend,
    build_engine,
    cached_engine,
    choose_profile,
    import_tensorrt,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache folder, engine table and failure memory."""
    monkeypatch.setenv("CELLSEG_HCS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(trt_backend, "_ENGINES", {})
    monkeypatch.setattr(trt_backend, "_LOGGERS", {})
    failures.forget_in_process()
    yield
    failures.forget_in_process()


@pytest.fixture
def model() -> Model:
    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "stem": 2}
    return Model(UNet(**options), ModelInfo(network=options))


def _pretend(monkeypatch, name: str, availability: Availability) -> None:
    monkeypatch.setattr(BACKENDS[name], "availability", classmethod(lambda cls: availability))


def _gpu_machine(monkeypatch) -> None:
    """Both GPU backends report a CUDA GPU (as they would on a GPU machine)."""
    _pretend(monkeypatch, "tensorrt", Availability(True, version="10.3", devices=("cuda:0",)))
    _pretend(monkeypatch, "torch", Availability(True, version="2", devices=("cpu", "cuda:0")))


def _stand_in_tensorrt(monkeypatch, version: str, record: dict | None = None):
    """Install a stand-in ``tensorrt`` and a GPU with compute capability 9.0."""
    trt = tensorrt_module(version, record)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_backend, "gpu_capability", lambda device: (9, 0))
    monkeypatch.setattr(trt_backend, "CudaTransfers", lambda device: Transfers(device, trt.record))
    return trt


# ---------------------------------------------------------------- 1: TensorRT 10 and 11


@pytest.mark.parametrize("version", ["8.6.1", "12.0.0", "nightly"])
def test_tensorrt_outside_10_and_11_is_unavailable_in_one_sentence(monkeypatch, version):
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt_module(version))
    with pytest.raises(BackendUnavailable) as caught:
        import_tensorrt()
    message = str(caught.value)
    assert f"TensorRT {version} is installed" in message and "tensorrt>=10,<12" in message
    assert "\n" not in message
    availability = TensorRTBackend.availability()
    assert not availability.ok and "10 and 11" in availability.reason


def test_the_gpu_extra_asks_for_exactly_the_tensorrt_versions_the_backend_runs():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["optional-dependencies"]["gpu"] == [trt_backend.SUPPORTED_RANGE]


def test_tensorrt_11_builds_fp16_from_a_graph_typed_fp16_with_no_precision_flag():
    trt = tensorrt_module("11.1.0")
    asked: list[str] = []

    def graph(precision):
        asked.append(precision)
        return b"graph"

    assert build_engine(trt, graph, choose_profile(1, 256, 4, 16), "fp16") == b"engine"
    assert asked == ["fp16"]
    assert trt.record["events"] == ["create_network 2"]  # 1 << STRONGLY_TYPED, no set_flag


def test_tensorrt_10_builds_fp16_from_the_fp32_graph_with_the_builder_flag():
    trt = tensorrt_module("10.3.0")
    asked: list[str] = []
    build_engine(trt, lambda p: asked.append(p) or b"graph", choose_profile(1, 256, 4, 16), "fp16")
    assert asked == ["fp32"]
    assert trt.record["events"] == ["create_network 0", "set_flag 0"]


@pytest.mark.parametrize(
    "error", [AttributeError("FP16"), TypeError("bad argument"), RuntimeError("no memory")]
)
def test_any_error_of_a_tensorrt_build_is_backend_unavailable(error):
    trt = tensorrt_module("11.1.0", {"fail_build": error})
    with pytest.raises(BackendUnavailable, match=rf"TensorRT 11.1.0 could not build .*{error}"):
        build_engine(trt, lambda p: b"graph", choose_profile(1, 256, 4, 16), "fp16")


def test_the_fp16_graph_for_strong_typing_agrees_with_fp32_and_keeps_float32_io(model):
    import onnxruntime as ort

    graph = onnx.load_from_string(onnx_bytes(model, precision="fp16"))
    weights = {init.data_type for init in graph.graph.initializer if len(init.dims) == 4}
    assert weights == {onnx.TensorProto.FLOAT16}
    for value in [*graph.graph.input, *graph.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch = np.random.default_rng(0).random((2, 1, 70, 90), dtype=np.float32)
    maps = {
        precision: ort.InferenceSession(onnx_bytes(model, precision=precision)).run(
            None, {"image": batch}
        )[0]
        for precision in ("fp32", "fp16")
    }
    assert maps["fp16"].dtype == np.float32
    assert 0 < np.abs(maps["fp16"] - maps["fp32"]).max() < 2e-3
    assert next(model.network.parameters()).dtype == torch.float32  # the model is untouched


def test_tensorrt_11_loads_through_the_runtime_with_a_typed_graph(monkeypatch, model):
    trt = _stand_in_tensorrt(monkeypatch, "11.1.0")
    _pretend(monkeypatch, "tensorrt", Availability(True, version="11.1.0", devices=("cuda:0",)))
    runtime = Runtime(model, "tensorrt", "cuda:0", tile_size=256, overlap=32, batch_size=8)
    parsed = onnx.load_from_string(trt.record["graphs"][0])
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in parsed.graph.initializer)
    # 12: the profile is the runtime's batch and tile, not a fixed 4 x 1024.
    smallest = (1, 1, model.multiple, model.multiple)  # one multiple of the network per side
    assert trt.record["profile"] == ("image", smallest, (8, 1, 256, 256), (8, 1, 256, 256))
    field = np.random.default_rng(1).random((1, 300, 420), dtype=np.float32)
    maps = runtime.predict(field)
    expected = engine_output(torch.from_numpy(field[None])).numpy()[0]
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert runtime.describe()["typing"] == "strong"


# ---------------------------------------------------------------- 2: auto falls back, remembers


def _tensorrt_that_fails(monkeypatch, calls: list) -> None:
    def load(cls, model, device=None, **options):
        calls.append(device)
        raise BackendUnavailable("TensorRT 11.1.0 could not build an engine for this model.")

    monkeypatch.setattr(TensorRTBackend, "load", classmethod(load))


def _torch_on_a_pretend_gpu(monkeypatch, loads: list, fail: Exception | None = None) -> None:
    """torch's CUDA load gives a CPU backend that says it runs on cuda (no GPU here)."""
    real_load = torch_backend.TorchBackend.load.__func__

    def load(cls, model, device=None, **options):
        loads.append(device)
        if device == "cpu":
            return real_load(cls, model, "cpu", **options)
        if fail is not None:
            raise fail
        backend = real_load(cls, model, "cpu", **options)
        backend.describe = lambda: {"backend": "torch", "device": "cuda:0", "precision": "fp16"}
        return backend

    monkeypatch.setattr(torch_backend.TorchBackend, "load", classmethod(load))


def test_auto_falls_back_from_a_tensorrt_that_fails_to_torch_cuda_and_says_why(monkeypatch, model):
    _gpu_machine(monkeypatch)
    trt_calls: list = []
    _tensorrt_that_fails(monkeypatch, trt_calls)
    _torch_on_a_pretend_gpu(monkeypatch, [])
    runtime = Runtime(model, "auto", tile_size=256, overlap=32)
    assert runtime.name == "torch" and runtime.describe()["device"] == "cuda:0"
    assert "auto fell back to torch" in runtime.reason
    assert "TensorRT 11.1.0 could not build" in runtime.reason
    assert trt_calls == [None]


def test_auto_remembers_a_failed_backend_in_the_process_and_on_disk(monkeypatch, model):
    _gpu_machine(monkeypatch)
    trt_calls: list = []
    _tensorrt_that_fails(monkeypatch, trt_calls)
    _torch_on_a_pretend_gpu(monkeypatch, [])
    Runtime(model, "auto", tile_size=256, overlap=32)
    again = Runtime(model, "auto", tile_size=256, overlap=32)  # the next field, same process
    assert len(trt_calls) == 1 and "failed here before" in again.reason
    failures.forget_in_process()  # another worker process: the disk remembers
    Runtime(model, "auto", tile_size=256, overlap=32)
    assert len(trt_calls) == 1
    assert failures.failures_path().is_file()
    Runtime(model, "auto", tile_size=512, overlap=32)  # another engine profile: tried afresh
    assert len(trt_calls) == 2


def test_auto_falls_back_to_the_cpu_when_every_gpu_backend_fails(monkeypatch, model):
    _gpu_machine(monkeypatch)
    _tensorrt_that_fails(monkeypatch, [])
    loads: list = []
    _torch_on_a_pretend_gpu(monkeypatch, loads, fail=RuntimeError("CUDA error: out of memory"))
    runtime = Runtime(model, "auto", tile_size=256, overlap=32)
    assert runtime.describe()["device"] == "cpu"
    assert "auto fell back to the CPU" in runtime.reason
    assert "tensorrt: TensorRT 11.1.0" in runtime.reason and "out of memory" in runtime.reason
    # A CUDA error may pass later: remembered in this process only, not on disk.
    on_disk = failures.failures_path().read_text()
    assert "TensorRT 11.1.0" in on_disk and "out of memory" not in on_disk


def test_auto_with_device_cuda_does_not_fall_back_to_the_cpu(monkeypatch, model):
    _gpu_machine(monkeypatch)
    _tensorrt_that_fails(monkeypatch, [])
    _torch_on_a_pretend_gpu(monkeypatch, [], fail=RuntimeError("no kernel image is available"))
    with pytest.raises(BackendUnavailable) as caught:
        Runtime(model, "auto", "cuda", tile_size=256, overlap=32)
    message = str(caught.value)
    assert "no backend could run the model" in message and "no kernel image" in message


def test_a_backend_asked_for_by_name_fails_with_its_own_sentence(monkeypatch, model):
    _gpu_machine(monkeypatch)
    _tensorrt_that_fails(monkeypatch, [])
    with pytest.raises(BackendUnavailable, match="^TensorRT 11.1.0 could not build"):
        Runtime(model, "tensorrt", tile_size=256, overlap=32)


# ------------------------------------------------------------- 4, 9, 10, 11: TensorRT at run time


def _backend(version: str = "10.3.0", device: str = "cuda:1", dtype=DataType.FLOAT):
    trt = tensorrt_module(version, {"engine_dtype": dtype})
    transfers = Transfers(device, trt.record)
    profile = choose_profile(1, 64, 4, 16)
    with transfers.on_device():
        engine = trt.Runtime(None).deserialize_cuda_engine(b"engine")
    return TensorRTBackend(trt, engine, device, "fp16", profile, transfers), trt.record, transfers


def test_tensorrt_enqueues_on_the_backends_own_stream_never_the_default_one():
    backend, record, transfers = _backend()
    backend.predict(np.zeros((2, 1, 32, 32), np.float32))
    assert record["streams"] == [transfers.handle] and transfers.handle != 0


def test_tensorrt_context_is_created_under_the_chosen_device():
    _, record, _ = _backend(device="cuda:1")
    assert record["contexts_created_on"] == ["cuda:1"]


def test_engines_are_kept_per_gpu_and_deserialized_on_that_gpu(tmp_path):
    trt = tensorrt_module("10.3.0")
    path = tmp_path / "model.engine"
    engines = {}
    for index in (0, 1, 0):
        trt.record["current_device"].append(f"cuda:{index}")
        engines.setdefault(index, set()).add(id(cached_engine(trt, path, lambda: b"x", index)))
        trt.record["current_device"].pop()
    assert [e for e in trt.record["events"] if e.startswith("deserialize")] == [
        "deserialize on cuda:0",
        "deserialize on cuda:1",
    ]
    assert len(engines[0]) == 1


def test_one_tensorrt_logger_serves_the_whole_process(tmp_path):
    trt = tensorrt_module("11.1.0")
    for name in ("a", "b"):
        build_engine(trt, lambda p: b"graph", choose_profile(1, 64, 4, 16), "fp16")
        cached_engine(trt, tmp_path / f"{name}.engine", lambda: b"x")
    assert trt.record["loggers"] == 1


def test_an_engine_built_on_first_use_does_not_wait_on_its_own_lock(tmp_path):
    import threading

    trt = tensorrt_module("11.1.0")
    profile = choose_profile(1, 64, 4, 16)
    built: list = []

    def first_use():
        built.append(
            cached_engine(
                trt,
                tmp_path / "m.engine",
                lambda: build_engine(trt, lambda p: b"g", profile, "fp16"),
            )
        )

    worker = threading.Thread(target=first_use, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "building under the engine lock deadlocked on the logger"
    assert len(built) == 1


def test_threads_wanting_the_same_engine_build_it_once(tmp_path):
    trt = tensorrt_module("10.3.0")
    builds: list = []

    def build():
        builds.append(1)
        return b"x"

    engines: list = []
    at_once(lambda: engines.append(cached_engine(trt, tmp_path / "m.engine", build)), threads=4)
    assert len(builds) == 1 and len({id(engine) for engine in engines}) == 1


def test_threads_never_run_two_batches_at_once_on_one_execution_context():
    backend, record, _ = _backend()
    batch = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    at_once(lambda: [backend.predict(batch) for _ in range(3)], threads=4)
    assert len(record["streams"]) == 12 and record["most_at_once"] == 1


def test_a_shape_tensorrt_refuses_is_an_error_not_a_wrong_answer():
    backend, record, _ = _backend()
    record["accept_shapes"] = False
    with pytest.raises(BackendUnavailable, match="refused an input of shape"):
        backend.predict(np.zeros((1, 1, 32, 32), np.float32))


def test_an_engine_with_fp16_inputs_and_outputs_is_fed_and_read_in_fp16():
    backend, _, transfers = _backend(dtype=DataType.HALF)
    batch = np.random.default_rng(2).random((3, 1, 32, 48), dtype=np.float32)
    maps = backend.predict(batch)
    assert transfers.fed == [torch.float16] and transfers.allocated == [torch.float16]
    assert maps.dtype == np.float32 and maps.flags.c_contiguous
    expected = engine_output(torch.from_numpy(batch).half()).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-3)


def test_cuda_copies_use_pinned_memory_without_blocking_on_the_backends_own_stream():
    recording = RecordingTorch()
    transfers = CudaTransfers("cuda:1", torch_module=recording)
    on_gpu = transfers.to_device(np.ones((2, 1, 8, 8), np.float32))
    maps = transfers.to_host(on_gpu)
    assert recording.streams_made == ["cuda:1"]
    own = "own stream 1"
    assert recording.copies == [
        {"to": "cuda:1", "from_pinned": True, "non_blocking": True, "stream": own},
        {"to": "host", "into_pinned": True, "non_blocking": True, "stream": own},
    ]
    assert recording.synchronized == [own]  # its own stream, not the whole device
    assert maps.flags.c_contiguous and maps.dtype == np.float32 and maps.shape == (2, 1, 8, 8)


# ---------------------------------------------------------------- 5, 6: torch on CUDA


def _pretend_cuda_for_torch(monkeypatch, record: dict) -> None:
    """torch believes in a GPU; the device move is a stand-in that changes the module in
    place as ``Module.to("cuda")`` does (here: to float16)."""
    from cellseg_hcs.runtime import cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch_backend, "_to_device", lambda network, device: network.half())
    monkeypatch.setattr(cuda, "CudaTransfers", lambda device: Transfers(str(device), record))


def test_the_torch_cuda_backend_leaves_the_models_network_a_cpu_float32_module(monkeypatch, model):
    before = {name: value.clone() for name, value in model.network.state_dict().items()}
    with monkeypatch.context() as pretend:
        _pretend_cuda_for_torch(pretend, tensorrt_module().record)
        backend = torch_backend.TorchBackend.load(model, "cuda")
    assert next(backend.network.parameters()).dtype == torch.float16  # its own copy moved
    parameters = list(model.network.parameters())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in parameters)
    for name, value in model.network.state_dict().items():
        assert torch.equal(value, before[name]), name
    field = np.random.default_rng(3).random((1, 64, 64), dtype=np.float32)
    Runtime(model, "torch", "cpu").predict(field)  # a later CPU runtime still works
    onnx_bytes(model)  # and so does an ONNX export


def test_torch_cuda_pads_partial_batches_to_one_shape_and_tunes_cudnn_once_per_shape(
    monkeypatch, model
):
    record = tensorrt_module().record
    _pretend_cuda_for_torch(monkeypatch, record)
    monkeypatch.setattr(torch_backend, "_to_device", lambda network, device: network)
    backend = torch_backend.TorchBackend.load(model, "cuda", batch_size=4, precision="fp32")
    seen: list[tuple] = []
    backend.network.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    cpu = torch_backend.TorchBackend(model.network, "cpu")
    rng = np.random.default_rng(4)
    for count in (1, 3, 4):
        batch = rng.random((count, 1, 32, 32), dtype=np.float32)
        maps = backend.predict(batch)
        assert maps.shape == (count, 2, 32, 32)
        np.testing.assert_allclose(maps, cpu.predict(batch), atol=1e-5)
    assert {tuple(shape) for shape in seen} == {(4, 1, 32, 32)}
    assert record["on_stream"] == 3 and torch.backends.cudnn.benchmark


def test_cudnn_stops_tuning_after_a_few_tile_shapes():
    tuning = torch_backend.ShapeTuning(limit=2)
    answers = [
        tuning.benchmark(s) for s in [(4, 1, 8, 8), (4, 1, 9, 9), (4, 1, 7, 7), (4, 1, 8, 8)]
    ]
    assert answers == [True, True, False, True]


def test_onnxruntime_that_silently_falls_back_to_the_cpu_does_not_report_cuda(
    monkeypatch, tmp_path
):
    import onnxruntime as real

    made: list = []

    class Session:
        def __init__(self, path, options, providers):
            made.append(providers)

        def get_providers(self):
            return ["CPUExecutionProvider"]  # the CUDA provider's libraries did not load

        def get_inputs(self):
            raise AssertionError("not reached")

    monkeypatch.setattr(
        real, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(real, "InferenceSession", Session)
    with pytest.raises(BackendUnavailable, match="could not start its CUDA provider on cuda:0"):
        OnnxRuntimeBackend(tmp_path / "model.onnx", device="cuda:0")
    cuda_options = dict(made[0][0][1])
    assert cuda_options == {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"}


def test_onnxruntime_and_onnxruntime_gpu_both_installed_is_reported_with_the_fix(
    monkeypatch, tmp_path
):
    from cellseg_hcs.runtime import onnxruntime_backend

    monkeypatch.setattr(
        onnxruntime_backend, "installed_distributions", lambda: ("onnxruntime", "onnxruntime-gpu")
    )
    availability = OnnxRuntimeBackend.availability()
    assert availability.ok and "both installed" in availability.reason
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in availability.reason
    with pytest.raises(BackendUnavailable, match="both installed"):
        OnnxRuntimeBackend(tmp_path / "model.onnx", device="cuda:0")  # no CUDA provider here
