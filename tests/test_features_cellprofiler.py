"""Our features agree with CellProfiler 4.2.8 itself, run in .venv-cp on the same labels."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from conftest import CP_PYTHON, needs_cellprofiler

from cellseg_hcs.field.measure import measure_objects

REFERENCE_SCRIPT = Path(__file__).parent / "cellprofiler_reference.py"
IMAGE = "test__2023-05-31_misc__MAX_2022-12-29-0004.tif"

# Which pixel of an object is "the" brightest when several tie is up to scipy's sort on the
# installed numpy; both pick a brightest pixel, so we compare the intensity there instead.
TIE_BROKEN = ("Nuclei_Location_MaxIntensity_X_DNA", "Nuclei_Location_MaxIntensity_Y_DNA")

pytestmark = needs_cellprofiler


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Real nuclei (all, one, two) measured by CellProfiler in one .venv-cp process."""
    folder = tmp_path_factory.mktemp("cellprofiler")
    mnfinder = Path(__file__).parent / "data" / "mnfinder"
    image = tifffile.imread(mnfinder / "images" / IMAGE)
    labels = tifffile.imread(mnfinder / "nuclei_labels" / IMAGE)
    cases = {"all": labels}
    for name, keep in (("one", [3]), ("two", [3, 5])):
        few = np.zeros_like(labels)
        for number, label in enumerate(keep, start=1):
            few[labels == label] = number
        cases[name] = few
    tifffile.imwrite(folder / "image.tif", image)
    arguments = []
    for name, case in cases.items():
        tifffile.imwrite(folder / f"{name}.tif", case)
        arguments += [str(folder / f"{name}.tif"), str(folder / f"{name}.csv")]
    subprocess.run(
        [
            str(CP_PYTHON),
            "-W",
            "ignore",
            str(REFERENCE_SCRIPT),
            str(folder / "image.tif"),
            *arguments,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return image, {
        name: (case, pd.read_csv(folder / f"{name}.csv")) for name, case in cases.items()
    }


def test_default_features_agree_with_cellprofiler_on_real_nuclei(measured):
    image, cases = measured
    labels, theirs = cases["all"]
    ours = measure_objects(labels, {"DNA": image}, features="default")

    assert len(theirs) == len(ours) == labels.max()
    assert set(theirs.columns) <= set(ours.columns)
    assert any(c.startswith("Nuclei_Texture_") for c in theirs.columns)
    assert any(c.startswith("Nuclei_Neighbors_") for c in theirs.columns)
    differing = [
        c
        for c in theirs.columns
        if c not in TIE_BROKEN
        and not np.allclose(ours[c], theirs[c], rtol=1e-6, atol=1e-9, equal_nan=True)
    ]
    assert differing == []
    scale = np.iinfo(image.dtype).max
    for table in (ours, theirs):
        x = table["Nuclei_Location_MaxIntensity_X_DNA"].to_numpy(int)
        y = table["Nuclei_Location_MaxIntensity_Y_DNA"].to_numpy(int)
        np.testing.assert_allclose(image[y, x] / scale, ours["Nuclei_Intensity_MaxIntensity_DNA"])


@pytest.mark.parametrize("case", ["one", "two"])
def test_neighbor_features_agree_with_cellprofiler_for_one_and_two_objects(measured, case):
    image, cases = measured
    labels, theirs = cases[case]
    theirs = theirs.filter(like="Neighbors")
    ours = measure_objects(labels, {"DNA": image}, features="default")
    np.testing.assert_allclose(ours[theirs.columns], theirs, rtol=1e-6, atol=1e-9)
