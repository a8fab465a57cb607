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
