"""Cells and cytoplasm agree with CellProfiler 4.2.8's, run in .venv-cp on the same nuclei.

Real two-channel images (CellProfiler's own ExampleFly crops: DNA and a cortex stain); the
nuclei are our shipped model's, handed to both IdentifySecondaryObjects (default settings,
one method at a time) and :func:`grow_cells`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import CP_PYTHON, needs_cellprofiler

from cellseg_hcs.field.cells import CellSettings, cytoplasm, grow_cells
from cellseg_hcs.field.measure import cellprofiler_scale
from cellseg_hcs.field.threshold import threshold_value

REFERENCE_SCRIPT = Path(__file__).parent / "cellprofiler_cells_reference.py"
FLY = Path(__file__).resolve().parents[1] / "examples" / "data" / "examplefly"
CROPS = ("01_POS076_y300_x560", "01_POS002_y250_x250")  # crowded, and sparse
METHODS = {
    "propagation": "Propagation",
    "watershed": "Watershed - Image",
    "distance": "Distance - N",
}

pytestmark = needs_cellprofiler


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """Each crop's stain and nuclei, and CellProfiler's cells for each method (one process)."""
    import cellseg_hcs as cs

    folder = tmp_path_factory.mktemp("cellprofiler_cells")
    model = cs.load_model("nuclei")
    inputs, cases = {}, []
    for crop in CROPS:
        stain = tifffile.imread(FLY / f"{crop}_Actin.tif")
        nuclei = model.segment(tifffile.imread(FLY / f"{crop}_DNA.tif")).astype(np.int32)
        inputs[crop] = (stain, nuclei)
        tifffile.imwrite(folder / f"{crop}_nuclei.tif", nuclei)
        for method, their_name in METHODS.items():
            image = FLY / f"{crop}_Actin.tif"
            cases.append(f"{crop}-{method}:{image}:{folder / f'{crop}_nuclei.tif'}:{their_name}")
    subprocess.run(
        [str(CP_PYTHON), "-W", "ignore", str(REFERENCE_SCRIPT), str(folder), *cases],
        check=True,
        capture_output=True,
        timeout=300,
    )

    def theirs(crop: str, method: str, what: str):
        if what == "threshold":
            return float((folder / f"{crop}-{method}_threshold.txt").read_text())
        return tifffile.imread(folder / f"{crop}-{method}_{what}.tif")

    return inputs, theirs


def agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The share of pixels that either calls a cell on which both give the same number."""
    either = (ours > 0) | (theirs > 0)
    return float((ours[either] == theirs[either]).mean())


@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("method", list(METHODS))
def test_cells_equal_cellprofilers_on_99_percent_of_pixels_with_the_same_count(grown, crop, method):
    inputs, theirs = grown
    stain, nuclei = inputs[crop]
    ours = grow_cells(nuclei, stain, CellSettings(method=method))
    reference = theirs(crop, method, "cells")

    assert nuclei.max() > 20
    assert set(np.unique(ours)) == set(np.unique(reference)) == set(np.unique(nuclei))
    assert agreement(ours, reference) >= 0.99


@pytest.mark.parametrize("crop", CROPS)
def test_threshold_is_cellprofilers_minimum_cross_entropy(grown, crop):
    inputs, theirs = grown
    stain, _ = inputs[crop]
    ours = threshold_value(cellprofiler_scale(stain), CellSettings().threshold)
    assert ours == pytest.approx(theirs(crop, "propagation", "threshold"), rel=1e-9)


@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("method", list(METHODS))
def test_cytoplasm_equals_identify_tertiary_objects_exactly(grown, crop, method):
    inputs, theirs = grown
    _, nuclei = inputs[crop]
    ours = cytoplasm(theirs(crop, method, "cells"), nuclei)
    np.testing.assert_array_equal(ours, theirs(crop, method, "cytoplasm"))
