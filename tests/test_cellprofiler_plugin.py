"""RunCellSegHCS in a real CellProfiler: cellprofiler-core 4.2.8.1 and CellProfiler 4.2.8.1 in
their own virtual environment (.venv-cp, built by scripts/setup_cellprofiler_env.sh).

The example pipeline runs through CellProfiler's own headless command line
(``cellprofiler -c -r -p examples/segment_nuclei.cppipe --plugins-directory plugins``), once with
the model in CellProfiler's Python and once on a ``cellseg-hcs serve`` started from this
environment, and its objects are compared with ``cellseg-hcs segment`` on the same files with
the same model.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CP_PYTHON, CP_VENV, needs_cellprofiler

from cellseg_hcs.serve import Client

REPO = Path(__file__).resolve().parents[1]
CP_COMMAND = CP_VENV / "bin" / "cellprofiler"
PLUGINS = REPO / "plugins"
EXAMPLE = REPO / "examples" / "segment_nuclei.cppipe"
EXAMPLEFLY = REPO / "examples" / "data" / "examplefly"
IMAGES = REPO / "tests" / "data" / "mnfinder" / "images"
# One 8-bit and one 16-bit image: CellProfiler rescales each differently to 0..1.
IMAGE_NAMES = (
    "test__2023-05-31_misc__MAX_2022-12-29-0004.tif",
    "test__2023-05-31_misc__MAX_2021_1_12_BAY18_CREST647_chr18_568_h3kac488_DAPI_20x-Series003-1.tif",
)

pytestmark = needs_cellprofiler


@pytest.fixture(scope="module", autouse=True)
def complete_environment() -> None:
    """A .venv-cp whose build stopped half-way fails here, with the reason, instead of later."""
    if not (CP_VENV / ".cellseg-hcs-env").is_file():
        pytest.fail(
            f"the CellProfiler environment at {CP_VENV} is incomplete (its build did not "
            "finish); rerun scripts/setup_cellprofiler_env.sh and read its output."
        )


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name in IMAGE_NAMES:
        shutil.copy(IMAGES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict[str, np.ndarray]:
    """Labels from ``cellseg-hcs segment`` (the command, run in-process) on the same files."""
    import tifffile
    from click.testing import CliRunner

    from cellseg_hcs.cli import main

    out = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(
        main, ["segment", *map(str, sorted(images.iterdir())), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return {
        path.name: tifffile.imread(out / f"{path.stem}_labels.tif") for path in images.iterdir()
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``cellseg-hcs serve`` in a subprocess; yields its connection file, always stopped."""
    folder = tmp_path_factory.mktemp("server")
    connection_file = folder / "serve.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from cellseg_hcs.cli import main; main()",
            "serve",
            "--connection-file",
            str(connection_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not connection_file.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "cellseg-hcs serve did not start in 120 s"
            time.sleep(0.2)
        yield connection_file
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
    assert process.returncode == 0, process.stdout.read()
    assert not connection_file.exists(), "the server left its connection file behind"


# Put on PYTHONPATH, this makes CellProfiler's Python one where cellseg_hcs is not installed
# (as in the CellProfiler desktop app): it removes the finder of the editable install, and
# records at exit whether torch or cellseg_hcs were imported after all.
HIDE_CELLSEG_HCS = """
import atexit, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "cellseg_hcs" not in getattr(f, "__module__", "")
                    and "cellseg_hcs" not in repr(f)]
sys.path[:] = [p for p in sys.path
               if not os.path.isfile(os.path.join(p, "cellseg_hcs", "__init__.py"))]

@atexit.register
def _record():
    with open(os.environ["IMPORTED_REPORT"], "w") as f:
        f.write(" ".join(m for m in ("torch", "cellseg_hcs") if m in sys.modules))
"""


def run_cellprofiler(pipeline: Path, images: Path, out: Path, env: dict | None = None) -> dict:
    """Run a pipeline with CellProfiler's headless command; per-image counts and object areas."""
    out.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [
            str(CP_COMMAND),
            "-c",
            "-r",
            "-p",
            str(pipeline),
            "--plugins-directory",
            str(PLUGINS),
            "-i",
            str(images),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=out,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    image_rows = list(csv.DictReader(open(out / "cellseg_hcs_Image.csv")))
    nuclei_rows = list(csv.DictReader(open(out / "cellseg_hcs_Nuclei.csv")))
    errors = [
        row[key]
        for row in image_rows
        for key in row
        if key.startswith("ModuleError") and float(row[key]) != 0
    ]
    assert not errors, completed.stderr[-3000:]
    results = {}
    for row in image_rows:
        number = row["ImageNumber"]
        objects = sorted(
            (int(r["ObjectNumber"]), float(r["AreaShape_Area"]))
            for r in nuclei_rows
            if r["ImageNumber"] == number
        )
        results[row["FileName_DNA"]] = {
            "count": int(float(row["Count_Nuclei"])),
            "areas": [area for _, area in objects],
        }
    return results


def assert_same_objects(found: dict, reference: dict[str, np.ndarray]) -> None:
    assert sorted(found) == sorted(reference)
    for name, labels in reference.items():
        expected_areas = np.bincount(labels.ravel())[1:]
        count = found[name]["count"]
        assert count > 0
        # The bar: the same number of objects within 2%.
        assert abs(count - len(expected_areas)) <= 0.02 * len(expected_areas), name
        # In fact the same objects: CellProfiler's 0..1 floats normalize to the same model input
        # as the raw integers, up to float rounding (a pixel exactly at a threshold may flip).
        if count == len(expected_areas):
            same = np.mean(np.asarray(found[name]["areas"]) == expected_areas)
            assert same >= 0.98, f"{name}: only {same:.1%} of objects have identical areas"


@pytest.fixture(scope="module")
def headless_report(tmp_path_factory, server) -> dict:
    """One run of tests/cellprofiler_headless.py in CellProfiler's Python (it takes seconds)."""
    folder = tmp_path_factory.mktemp("headless")
    wrong_token_file = folder / "wrong-token.json"
    details = json.loads(server.read_text())
    wrong_token_file.write_text(json.dumps({**details, "token": "not-the-token"}))
    request = folder / "request.json"
    request.write_text(
        json.dumps(
            {
                "plugins": str(PLUGINS),
                "pipeline": str(EXAMPLE),
                "tmp": str(folder),
                "image": str(IMAGES / IMAGE_NAMES[1]),
                "server_file": str(server),
                "wrong_token_file": str(wrong_token_file),
                "cells": [
                    str(EXAMPLEFLY / "01_POS218_y560_x200_DNA.tif"),
                    str(EXAMPLEFLY / "01_POS218_y560_x200_Actin.tif"),
                ],
            }
        )
    )
    completed = subprocess.run(
        [str(CP_PYTHON), str(REPO / "tests" / "cellprofiler_headless.py"), str(request)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_cellprofilers_plugin_loader_loads_the_module(headless_report):
    loader = headless_report["loader"]
    assert loader["loaded"]
    assert loader["bad_modules"] == []
    assert loader["category"] == "Object Processing"
    assert "ImageSegmentation" in loader["classes"]


def test_loading_the_plugin_imports_neither_torch_nor_cellseg_hcs(headless_report):
    assert headless_report["loader"]["heavy_imports_at_start"] == []


def test_every_setting_survives_saving_and_loading_a_cppipe(headless_report):
    trip = headless_report["round_trip"]
    assert trip["loaded"] == trip["saved"]
    for text, value in trip["changed"].items():
        assert trip["loaded"][text] == value, text
    assert trip["options"] == {
        "model": "/models/my model.safetensors",
        "device": "cuda",
        "tile_size": 768,
        "batch_size": 16,
        "probabilities": True,
        "foreground_threshold": 0.35,
        "min_size": 40,
        "diameter": 60.0,
        "channel": 0,
        "cells": {"channel": 1, "method": "distance"},
        "flips": 8,
    }
    assert trip["revision"] == 6


def test_a_revision_1_pipeline_loads_with_the_diameter_off(headless_report):
    # examples/segment_nuclei.cppipe was saved by revision 1, before the diameter setting.
    as_loaded = headless_report["round_trip"]["as_loaded"]
    assert as_loaded["Object size"] == "The image's own scale"
    assert as_loaded["Typical diameter (pixels)"] == "30.0"
    assert as_loaded["Probability threshold"] == "0.5"  # a saved value is kept as saved


def test_a_revision_2_pipeline_keeps_its_diameter_choice(headless_report):
    messages = headless_report["validation"]
    assert messages["revision_2_diameter_Yes"] == ["Give the typical diameter", "45.0", 6]
    assert messages["revision_2_diameter_No"] == ["The image's own scale", "45.0", 6]


def test_a_revision_3_pipeline_loads_with_the_cells_off(headless_report):
    assert headless_report["validation"]["revision_3_cells"] == [
        "No",
        "None",
        "Propagation",
        "Cells",
        "Cytoplasm",
        "No",
        "Micronuclei",
    ]


def test_a_revision_4_pipeline_loads_with_the_micronuclei_off(headless_report):
    assert headless_report["validation"]["revision_4_micronuclei"] == ["No", "Micronuclei"]


def test_a_revision_5_pipeline_loads_with_the_models_own_flips(headless_report):
    assert headless_report["validation"]["revision_5_flips"] == ["The model's own"]
    assert "flips" not in headless_report["validation"]["example_options"]


def test_the_module_outputs_micronuclei_with_their_parent_nuclei(headless_report):
    found = headless_report["micronuclei"]
    assert found["count"] == 3
    assert found["parents"] == [1, 1, 0]  # the third is near no nucleus
    assert found["children"] == [2, 0]
    assert found["image_count"] == 3
    assert "Micronuclei|Parent_Nuclei" in found["columns_declared"]
    assert "Nuclei|Children_Micronuclei_Count" in found["columns_declared"]
    # the relationship itself, as IdentifySecondaryObjects records it: nucleus 1 is the
    # parent of micronuclei 1 and 2; the third has no parent and no relationship
    assert found["relationships_declared"] == [["Parent", "Nuclei", "Micronuclei"]]
    assert found["relationships"] == [["Parent", "Nuclei", "Micronuclei", [1, 1], [1, 2]]]


def test_a_model_without_micronuclei_says_so_when_they_are_asked_for(headless_report):
    message = headless_report["micronuclei"]["without"]
    assert "makes no micronuclei" in message and "micronucleus class" in message


def test_the_module_grows_cells_and_cytoplasm_as_more_object_sets(headless_report):
    cells = headless_report["cells"]
    nuclei_count = cells["counts"][0]
    assert nuclei_count > 10 and cells["counts"] == [nuclei_count] * 3
    assert cells["nuclei_inside_their_cells"]
    assert cells["parents"] == [1, 2, 3] and cells["children"] == [1, 1, 1]
    assert cells["image_count"] == nuclei_count
    assert "Cells|Parent_Nuclei" in cells["columns_declared"]
    assert "Cytoplasm|Parent_Cells" in cells["columns_declared"]


def test_a_new_module_measures_the_object_size_as_segment_does(headless_report):
    messages = headless_report["validation"]
    assert messages["new_module_object_size"] == "Measure it in each image"
    assert messages["new_module_options_diameter"] == "auto"


def test_validation_explains_each_misconfiguration(headless_report):
    messages = headless_report["validation"]
    assert messages["example"] is None
    assert "built-in model" in messages["empty_builtin_name"]
    assert "nope.safetensors" in messages["missing_model_file"]
    assert ".safetensors file" in messages["not_a_model_file"]
    assert "cellseg-hcs serve" in messages["server_not_running"]
    assert "no-server.json" in messages["server_not_running"]
    assert "not installed in CellProfiler's Python" in messages["in_process_not_installed"]
    assert "cellseg-hcs serve" in messages["automatic_not_installed_no_server"]
    assert "newer RunCellSegHCS" in messages["newer_revision"]
    assert "another image than the nuclei's" in messages["same_image_for_cells"]


def test_automatic_mode_runs_in_process_only_where_cellseg_hcs_is_installed(headless_report):
    messages = headless_report["validation"]
    assert messages["automatic_uses_server_when_installed"] is False
    assert messages["automatic_uses_server_when_not_installed"] is True


def test_model_is_loaded_once_and_kept_across_image_sets(headless_report):
    output = headless_report["probability_image"]
    assert output["segmenter_kept"] is True
    assert output["models_loaded"] == 1


def test_probability_image_is_the_models_foreground_map(headless_report):
    output = headless_report["probability_image"]
    assert output["shape"] == output["image_shape"]
    assert output["max_difference"] < 1e-5
    assert output["objects"] > 0


def test_server_mode_chosen_in_the_settings_sends_the_image_to_the_server(
    headless_report, reference, server
):
    # The runner makes in-process segmentation fail loudly, so these objects came from the server.
    assert headless_report["forced_server"] == reference[IMAGE_NAMES[1]].max()


def test_automatic_mode_falls_back_to_the_server_when_cellseg_hcs_fails_to_import(
    headless_report, reference
):
    broken = headless_report["broken_install"]
    assert broken["automatic_objects"] == reference[IMAGE_NAMES[1]].max()
    assert "does not import" in broken["in_process_error"]
    assert "libtorch_cpu.so" in broken["in_process_error"]


def test_plugin_reports_the_servers_refusal_of_a_wrong_token(headless_report):
    assert "wrong or missing token" in headless_report["wrong_token"]


def test_example_pipeline_in_process_finds_the_objects_of_cellseg_hcs_segment(
    images, reference, tmp_path
):
    found = run_cellprofiler(EXAMPLE, images, tmp_path / "out")
    assert_same_objects(found, reference)


def test_example_pipeline_uses_the_server_where_cellseg_hcs_is_not_installed(
    images, reference, server, tmp_path
):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_CELLSEG_HCS)
    imported = tmp_path / "imported.txt"
    served_before = Client(server).info()["images_served"]
    found = run_cellprofiler(
        EXAMPLE,
        images,
        tmp_path / "out",
        env={
            "CELLSEG_HCS_SERVER_FILE": str(server),
            "PYTHONPATH": str(hide),
            "IMPORTED_REPORT": str(imported),
        },
    )
    assert imported.read_text() == ""  # neither torch nor cellseg_hcs in CellProfiler's Python
    assert Client(server).info()["images_served"] == served_before + len(IMAGE_NAMES)
    assert_same_objects(found, reference)
