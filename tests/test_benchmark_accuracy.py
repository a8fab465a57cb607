"""Comparing candidate models on validation never reads the test split (benchmarks/accuracy.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import load_benchmark


@pytest.fixture
def accuracy():
    return load_benchmark("accuracy")


@pytest.fixture
def one_image_data(mnfinder_dir, tiny_model, tmp_path) -> tuple[Path, Path]:
    """An mnfinder-like folder with one validation image and an unreadable test image (any
    read of the test split fails), and a tiny model file."""
    data = tmp_path / "mnfinder"
    name = "test__2023-05-31_misc__MAX_2022-12-29-0004.tif"
    for folder in ("images", "nuclei_labels"):
        (data / folder).mkdir(parents=True)
        shutil.copy(mnfinder_dir / folder / name, data / folder / "validation__one.tif")
        (data / folder / "test__unreadable.tif").write_bytes(b"not a tiff")
    model = tmp_path / "tiny.safetensors"
    tiny_model.save(model)
    return data, model


def test_validation_only_scores_validation_and_its_changes_without_reading_test(
    accuracy, one_image_data, tmp_path
):
    data, model = one_image_data
    out = tmp_path / "scores.json"

    accuracy.main(
        ["--data", str(data), "--model", str(model), "--validation-only", "--json", str(out)]
    )

    rows = json.loads(out.read_text())["rows"]
    assert {row["data"] for row in rows} == {
        "mnfinder validation",
        *(f"mnfinder validation, {change}" for change in accuracy.CHANGES),
    }
    assert {row["method"] for row in rows} == {"cellseg-hcs", "classic (Otsu + watershed)"}


def test_backend_and_precision_are_the_ones_scored_and_recorded(accuracy, one_image_data, tmp_path):
    data, model = one_image_data
    out = tmp_path / "scores.json"

    accuracy.main(
        [
            "--data",
            str(data),
            "--model",
            str(model),
            "--validation-only",
            "--no-robustness",
            "--backend",
            "torch",
            "--precision",
            "bf16",
            "--json",
            str(out),
        ]
    )

    result = json.loads(out.read_text())
    assert result["runtime"]["backend"] == "torch"
    assert result["runtime"]["precision"] == "bf16"
    assert [row["data"] for row in result["rows"]] == ["mnfinder validation"] * 2
