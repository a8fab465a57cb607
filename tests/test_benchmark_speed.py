"""The speed benchmark times the model it is asked about (benchmarks/speed.py)."""

from __future__ import annotations

import subprocess

import pytest
from conftest import load_benchmark


@pytest.fixture
def speed():
    return load_benchmark("speed")


def test_the_whole_command_runs_the_model_given_to_the_benchmark(speed, tmp_path, monkeypatch):
    ran: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda command, **_: ran.append(command))
    monkeypatch.setattr(speed, "_pixels", lambda path: 100)
    images = [tmp_path / "a.tif", tmp_path / "b.tif"]

    timings = speed.whole_command(
        images, repeats=2, workdir=tmp_path, diameters=[60], model="my_model.safetensors"
    )

    ours = [command for command in ran if "segment" in command]
    assert len(ours) == 1 + 2 * 2  # a warm-up, then each variant per repeat
    for command in ours:
        assert command[command.index("--model") + 1] == "my_model.safetensors"
    assert set(timings["seconds"]) == {
        "cellseg-hcs segment",
        "cellseg-hcs segment --diameter 60",
        "classic",
    }


def test_gpu_backends_are_timed_when_present_not_only_backends_listing_the_cpu(speed):
    from cellseg_hcs.runtime import Availability

    gpu_machine = {
        "tensorrt": Availability(True, devices=("cuda:0", "cuda:1")),
        "torch": Availability(True, devices=("cpu", "cuda:0", "cuda:1")),
        "onnxruntime": Availability(True, devices=("cpu",)),
    }
    assert speed.timed_backends(gpu_machine) == [
        "tensorrt@cuda:0",
        "torch@cpu",
        "torch@cuda:0",
        "onnxruntime@cpu",
    ]
    assert speed.timed_backends(gpu_machine, ["torch@cuda", "tensorrt"]) == [
        "torch@cuda:0",
        "tensorrt@cuda:0",
    ]
    no_gpu = {"tensorrt": Availability(False, "not installed"), **gpu_machine}
    assert speed.timed_backends({**no_gpu, "tensorrt": Availability(False)}) == [
        "torch@cpu",
        "torch@cuda:0",
        "onnxruntime@cpu",
    ]


def test_a_backend_is_timed_on_the_device_its_worker_is_given(speed, monkeypatch):
    import cellseg_hcs

    asked: list = []

    class Model:
        def runtime(self, backend, device):
            asked.append((backend, device))
            raise SystemExit  # the device is all this test needs

    monkeypatch.setattr(cellseg_hcs, "load_model", lambda name: Model())
    with pytest.raises(SystemExit):
        speed._worker(["torch@cuda:0", "nuclei", "a.tif"])
    with pytest.raises(SystemExit):
        speed._worker(["onnxruntime", "nuclei", "a.tif"])
    assert asked == [("torch", "cuda:0"), ("onnxruntime", "cpu")]
