"""The device check (benchmarks/gpu_check.py, issue #20): its comparison of precisions, and
a reduced run on this CPU machine that must say there is no GPU and write its JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_benchmark

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def gpu_check():
    return load_benchmark("gpu_check")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEG_HCS_CACHE", str(tmp_path / "cache"))


def test_bf16_maps_and_objects_are_compared_with_fp32_on_a_real_image(gpu_check):
    from cellseg_hcs import load_model
    from cellseg_hcs.field.pipeline import FieldChannels
    from cellseg_hcs.settings import FieldSettings

    model = load_model("nuclei")
    sizes = gpu_check.SIZES["quick"]
    name, image, truth = gpu_check.mnfinder_images(1, 192)[0]
    maps, labels = {}, {}
    for precision in ("fp32", "bf16"):
        runtime = gpu_check.runtime_for(model, "torch@cpu", precision, sizes)
        pipeline = model.pipeline(FieldSettings(model="nuclei", diameter=None), runtime=runtime)
        prepared = pipeline.prepare(FieldChannels({"DNA": image}, name))
        maps[precision] = pipeline.predict(prepared, 1.0)
        labels[precision] = pipeline.objects(prepared, maps[precision], 1.0).labels
    scores = gpu_check.agreement_scores(
        [maps["fp32"]], [maps["bf16"]], [labels["fp32"]], [labels["bf16"]], [truth]
    )
    assert 0 < scores["max_abs_diff"] < 0.1  # bf16 really ran, and is close
    assert scores["f1_vs_reference"] >= 0.9 and scores["f1_vs_truth"] >= 0.8
    # A precision that breaks the model (flat maps, no objects) scores as broken.
    flat = np.full_like(maps["fp32"], 0.5)
    broken = gpu_check.agreement_scores(
        [maps["fp32"]], [flat], [labels["fp32"]], [np.zeros_like(labels["fp32"])]
    )
    assert broken["max_abs_diff"] >= 0.4 and broken["f1_vs_reference"] == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_quick_check_on_a_cpu_machine_says_so_and_writes_every_section(gpu_check, tmp_path):
    status = gpu_check.main(["--out", str(tmp_path), "--quick"])
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert status == 0 and results["failed"] == []
    assert results["gpu"] is False and "no CUDA GPU here" in results["note"]
    sections = results["sections"]
    smoke = {row["backend"]: row["status"] for row in sections["smoke"]}
    assert smoke["torch@cpu"] == "passed" and smoke["tensorrt"] == "absent"
    network = {row["backend"]: row for row in sections["network"]}
    assert {"torch@cpu fp32", "torch@cpu bf16"} <= set(network)
    assert all(row["mp_per_s"] > 0 for row in network.values())
    assert sections["agreement"]["torch@cpu bf16"]["max_abs_diff"] > 0
    stages = sections["stages"]["seconds"]
    assert set(stages) == {"read", "normalize", "predict", "postprocess", "measure"}
    assert all(seconds > 0 for seconds in stages.values())
    plate = sections["plate"]
    assert plate["failed"] == 0 and plate["fields"] == 2 and plate["objects"] > 0
    assert plate["layout"]["kind"] == "cpu"
    run = sections["training"]
    assert run["status"] == "passed" and run["device"] == "cpu" and run["steps"] == 4
    assert run["loaders"] == 2 and run["steps_per_s"] > 0 and len(run["loss"]) == 2
    assert "no CUDA GPU here" in (tmp_path / "gpu_check.md").read_text()
    assert "## Training" in (tmp_path / "gpu_check.md").read_text()


def test_the_network_alone_is_timed_on_the_gpu_without_host_copies_for_tensorrt(gpu_check):
    from gpu_stand_ins import Transfers, tensorrt_module

    from cellseg_hcs.runtime.tensorrt_backend import TensorRTBackend, choose_profile

    trt = tensorrt_module("11.1.0")
    transfers = Transfers("cuda:0", trt.record)
    with transfers.on_device():
        engine = trt.Runtime(None).deserialize_cuda_engine(b"engine")
    profile = choose_profile(1, 64, 4, 16)
    backend = TensorRTBackend(trt, engine, "cuda:0", "fp16", profile, transfers)
    seconds = gpu_check.device_only_seconds(backend, np.zeros((4, 1, 64, 64), np.float32), 3)
    assert seconds > 0
    assert trt.record["streams"] == [transfers.handle] * 4  # one warm-up, three timed
    assert len(transfers.fed) == 1  # the batch was copied to the GPU once


def test_the_network_alone_is_timed_for_torch_on_cuda_and_not_for_cpu_backends(
    gpu_check, monkeypatch
):
    import torch
    from gpu_stand_ins import Transfers, tensorrt_module

    from cellseg_hcs import load_model
    from cellseg_hcs.runtime import cuda, torch_backend

    record = tensorrt_module().record
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch_backend, "_to_device", lambda network, device: network)
    monkeypatch.setattr(cuda, "CudaTransfers", lambda device: Transfers(str(device), record))
    model = load_model("nuclei")
    calls: list = []
    backend = torch_backend.TorchBackend.load(model, "cuda", precision="fp32")
    backend.network.register_forward_pre_hook(lambda module, args: calls.append(1))
    batch = np.zeros((1, 1, 64, 64), np.float32)
    assert gpu_check.device_only_seconds(backend, batch, 2) > 0
    assert len(calls) == 3 and len(record["synchronized"]) == 2
    cpu = torch_backend.TorchBackend.load(model, "cpu")
    assert gpu_check.device_only_seconds(cpu, batch, 2) is None
