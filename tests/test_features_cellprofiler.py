"""Our features agree with CellProfiler 4.2.8 itself, run in .venv-cp on the same labels.

Every column of the ``full`` set, on two real channels: ``DNA`` is the mnfinder image whose
nuclei are labelled (8-bit), ``Other`` another mnfinder image of the same size (16-bit, a
different field: real pixels, not aligned with the nuclei), so that MeasureColocalization
has a pair and CellProfiler's rules for mixed 8- and 16-bit images are exercised. Cases:
the real labels (36 nuclei, several on the image border), one nucleus, two nuclei, the real
labels plus a one-pixel object, three one-pixel objects alone, the real labels numbered
with gaps, and no objects.
CellProfiler runs once for all cases (tests/cellprofiler_reference.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from conftest import CP_PYTHON, needs_cellprofiler

from cellseg_hcs.field.measure import (
    FEATURE_GROUPS,
    FEATURE_SETS,
    feature_columns,
    measure_objects,
)

REFERENCE_SCRIPT = Path(__file__).parent / "cellprofiler_reference.py"
MNFINDER = Path(__file__).parent / "data" / "mnfinder"
IMAGE = "test__2023-05-31_misc__MAX_2022-12-29-0004.tif"
OTHER = "test__2023-05-31_misc__MCC13_rfpcyto_w1cDAPI_s43.tif"
CHANNELS = ("DNA", "Other")
RTOL, ATOL = 1e-6, 1e-9  # ATOL: floating-point noise around 0 (central moments of order 1)

pytestmark = needs_cellprofiler


def _cases(labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{case: (labels we measure, labels CellProfiler measures)}``."""
    cases = {"all": labels}
    for name, keep in (("one", [3]), ("two", [3, 5])):
        few = np.zeros_like(labels)
        for number, label in enumerate(keep, start=1):
            few[labels == label] = number
        cases[name] = few
    pixel = labels.copy()
    pixel[tuple(np.argwhere(labels == 0)[1000])] = labels.max() + 1
    cases["pixel"] = pixel
    # Only one-pixel objects: no object has a pixel pair, so texture has nothing to count.
    specks = np.zeros_like(labels)
    for number, where in enumerate(np.argwhere(labels > 0)[[0, 500, 1000]], start=1):
        specks[tuple(where)] = number
    cases["specks"] = specks
    cases["empty"] = np.zeros_like(labels)
    out = {name: (case, case) for name, case in cases.items()}
    # Numbers with gaps are closed by measure_objects: CellProfiler measures them closed.
    out["gaps"] = (np.where(labels > 0, labels * 3 + 7, 0), labels)
    return out


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """``(channels, {case: (our labels, CellProfiler's table)})``."""
    folder = tmp_path_factory.mktemp("cellprofiler")
    labels = tifffile.imread(MNFINDER / "nuclei_labels" / IMAGE).astype(np.int32)
    assert np.unique(labels).size - 1 == labels.max()  # real labels, numbered 1..N
    channels = {
        "DNA": tifffile.imread(MNFINDER / "images" / IMAGE),
        "Other": tifffile.imread(MNFINDER / "images" / OTHER),
    }
    request = {"images": {}, "cases": []}
    for name, pixels in channels.items():
        tifffile.imwrite(folder / f"{name}.tif", pixels)
        request["images"][name] = str(folder / f"{name}.tif")
    cases = _cases(labels)
    for name, (_, theirs) in cases.items():
        tifffile.imwrite(folder / f"{name}.tif", theirs)
        request["cases"].append([str(folder / f"{name}.tif"), str(folder / f"{name}.csv")])
    (folder / "request.json").write_text(json.dumps(request))
    subprocess.run(
        [str(CP_PYTHON), "-W", "ignore", str(REFERENCE_SCRIPT), str(folder / "request.json")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return channels, {
        name: (ours, pd.read_csv(folder / f"{name}.csv")) for name, (ours, _) in cases.items()
    }


def _disagreeing(ours: pd.DataFrame, theirs: pd.DataFrame, columns) -> dict[str, float]:
    """Columns that differ beyond the tolerance, with the largest relative difference."""
    out = {}
    for column in columns:
        a, b = ours[column].to_numpy(float), theirs[column].to_numpy(float)
        if not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
            with np.errstate(all="ignore"):
                out[column] = float(np.nanmax(np.abs(a - b) / np.abs(b)))
    return out


def test_full_set_has_exactly_cellprofilers_columns(measured):
    channels, cases = measured
    _, theirs = cases["all"]
    ours = feature_columns("Nuclei", CHANNELS, FEATURE_SETS["full"])
    assert sorted(c for c in ours if c.startswith("Nuclei_")) == sorted(theirs.columns)


@pytest.mark.parametrize("group", sorted(FEATURE_GROUPS))
def test_every_group_agrees_with_cellprofiler_on_real_nuclei(measured, group):
    channels, cases = measured
    labels, theirs = cases["all"]
    ours = measure_objects(labels, channels, features=[group])
    assert len(ours) == len(theirs) == 36
    columns = [c for c in ours.columns if c.startswith("Nuclei_")]
    assert columns and set(columns) <= set(theirs.columns)
    assert _disagreeing(ours, theirs, columns) == {}


@pytest.mark.parametrize("case", ["one", "two", "pixel", "specks", "gaps"])
def test_full_set_agrees_with_cellprofiler_on_edge_cases(measured, case):
    channels, cases = measured
    labels, theirs = cases[case]
    ours = measure_objects(labels, channels, features="full")
    assert len(ours) == len(theirs)
    assert _disagreeing(ours, theirs, theirs.columns) == {}


def test_brightest_pixel_is_an_object_maximum(measured):
    channels, cases = measured
    labels, theirs = cases["all"]
    for name, pixels in channels.items():
        scale = np.iinfo(pixels.dtype).max
        x = theirs[f"Nuclei_Location_MaxIntensity_X_{name}"].to_numpy(int)
        y = theirs[f"Nuclei_Location_MaxIntensity_Y_{name}"].to_numpy(int)
        np.testing.assert_array_equal(labels[y, x], np.arange(1, 37))
        np.testing.assert_allclose(
            pixels[y, x] / scale, theirs[f"Nuclei_Intensity_MaxIntensity_{name}"]
        )


def test_field_without_objects_has_cellprofilers_columns_and_no_rows(measured):
    channels, cases = measured
    labels, theirs = cases["empty"]
    ours = measure_objects(labels, channels, features="full")
    assert len(ours) == len(theirs) == 0
    assert sorted(c for c in ours.columns if c.startswith("Nuclei_")) == sorted(theirs.columns)
