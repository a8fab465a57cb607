"""Cells grown from nuclei, and cytoplasm: the guarantees, on synthetic fields with exact truth."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.cells import (
    BLANK_CELL_NOTE,
    CELL_METHODS,
    CellSettings,
    cell_objects,
    cells_from_maps,
    cytoplasm,
    discard_border,
    grow_cells,
)

IMAGE_METHODS = ["propagation", "watershed", "distance"]


def two_nuclei_in_a_bright_square():
    """Two nuclei 20 pixels apart, centred in one evenly bright 24 x 40 square."""
    nuclei = np.zeros((40, 60), np.uint16)
    nuclei[18:22, 18:22] = 1
    nuclei[18:22, 38:42] = 2
    stain = np.full((40, 60), 10, np.uint16)
    stain[8:32, 10:50] = 40000
    return nuclei, stain


def test_two_nuclei_in_an_evenly_bright_square_split_it_at_the_midline():
    nuclei, stain = two_nuclei_in_a_bright_square()
    cells = grow_cells(nuclei, stain, CellSettings(method="propagation"))
    square = np.zeros(stain.shape, bool)
    square[8:32, 10:50] = True
    assert set(np.unique(cells[square])) == {1, 2}
    assert not cells[~square].any()
    # the midline between the nuclei' centres (columns 19.5 and 39.5) is column 29.5
    assert (cells[8:32, 10:30] == 1).all() and (cells[8:32, 30:50] == 2).all()


@pytest.mark.parametrize("method", ["propagation", "watershed"])
def test_two_cells_meet_on_the_dim_line_between_them_not_on_the_midline(method):
    nuclei, stain = two_nuclei_in_a_bright_square()
    stain[8:32, 33] = 20000  # dimmer than the cells, brighter than the background
    cells = grow_cells(nuclei, stain, CellSettings(method=method))
    assert (cells[8:32, 10:33] == 1).all() and (cells[8:32, 34:50] == 2).all()


def test_distance_method_grows_each_nucleus_by_n_pixels_whatever_the_stain():
    nuclei = np.zeros((41, 41), np.uint8)
    nuclei[20, 20] = 1
    cells = grow_cells(nuclei, np.zeros((41, 41)), CellSettings(method="distance", distance=7))
    rows, cols = np.nonzero(cells == 1)
    assert np.hypot(rows - 20, cols - 20).max() == pytest.approx(7)
    assert (cells == 1).sum() == (np.hypot(*np.mgrid[-20:21, -20:21]) <= 7).sum()


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_a_cell_holds_its_own_nucleus_and_never_another(method):
    rng = np.random.default_rng(3)
    nuclei = np.zeros((96, 96), np.int32)
    for number, (y, x) in enumerate(rng.integers(6, 90, size=(15, 2)), start=1):
        nuclei[y - 3 : y + 3, x - 3 : x + 3] = number
    present = set(np.unique(nuclei)) - {0}
    stain = rng.integers(0, 4000, size=(96, 96)).astype(np.uint16)
    cells = grow_cells(nuclei, stain, CellSettings(method=method))
    inside = nuclei > 0
    np.testing.assert_array_equal(cells[inside], nuclei[inside])
    assert set(np.unique(cells)) - {0} == present


def test_a_nucleus_outside_the_cell_mask_keeps_its_nucleus_as_its_cell():
    nuclei, stain = two_nuclei_in_a_bright_square()
    nuclei[2:5, 2:5] = 3  # in the dark corner, below any threshold
    cells = grow_cells(nuclei, stain)
    np.testing.assert_array_equal(cells == 3, nuclei == 3)


def test_nuclei_numbers_with_gaps_are_the_cells_numbers():
    nuclei, stain = two_nuclei_in_a_bright_square()
    nuclei[nuclei == 2] = 7
    cells = grow_cells(nuclei, stain)
    assert set(np.unique(cells)) == {0, 1, 7}
    assert (cells[8:32, 30:50] == 7).all()


def test_blank_cell_channel_makes_every_cell_its_nucleus_and_says_so():
    nuclei, _ = two_nuclei_in_a_bright_square()
    notes: list[str] = []
    cells = grow_cells(nuclei, np.zeros(nuclei.shape, np.uint16), notes=notes)
    np.testing.assert_array_equal(cells, nuclei)
    assert notes == [BLANK_CELL_NOTE]


def test_a_field_without_nuclei_has_no_cells():
    _, stain = two_nuclei_in_a_bright_square()
    cells = grow_cells(np.zeros(stain.shape, np.uint16), stain)
    assert cells.shape == stain.shape and not cells.any()


def test_integer_stains_are_scaled_as_cellprofiler_loads_them():
    nuclei, stain = two_nuclei_in_a_bright_square()
    scaled = stain / np.iinfo(np.uint16).max
    for method in IMAGE_METHODS:
        settings = CellSettings(method=method)
        np.testing.assert_array_equal(
            grow_cells(nuclei, stain, settings), grow_cells(nuclei, scaled, settings)
        )


def test_a_lower_threshold_correction_takes_in_dim_cytoplasm():
    nuclei = np.zeros((40, 40), np.uint8)
    nuclei[18:22, 18:22] = 1
    yy, xx = np.mgrid[:40, :40]
    stain = (60000 * np.exp(-np.hypot(yy - 19.5, xx - 19.5) / 8)).astype(np.uint16)
    default = grow_cells(nuclei, stain)
    lower = grow_cells(nuclei, stain, CellSettings(threshold_correction_factor=0.5))
    assert (lower == 1).sum() > (default == 1).sum()
    assert ((default == 1) <= (lower == 1)).all()


def test_cells_and_stain_of_different_shapes_are_refused_in_one_sentence():
    nuclei, stain = two_nuclei_in_a_bright_square()
    with pytest.raises(SettingError, match=r"cell channel has shape \(40, 59\).*\(40, 60\)"):
        grow_cells(nuclei, stain[:, :59])


def test_the_model_method_reads_maps_not_the_stain():
    nuclei, stain = two_nuclei_in_a_bright_square()
    with pytest.raises(SettingError, match="cells_from_maps"):
        grow_cells(nuclei, stain, CellSettings(method="model", model="cells.safetensors"))


# ----------------------------------------------------------------------------- model maps


def test_cell_model_maps_are_split_among_the_nuclei():
    nuclei, _ = two_nuclei_in_a_bright_square()
    nuclei[2:5, 55:58] = 3  # outside the predicted foreground
    maps = np.zeros((2, 40, 60), np.float32)
    maps[0, 8:32, 10:50] = 0.9
    maps[0, 34:38, 2:8] = 0.9  # foreground no nucleus reaches: no cell
    yy, xx = np.mgrid[:40, :60]
    maps[1] = np.maximum(
        1 - np.hypot(yy - 19.5, xx - 19.5) / 20, 1 - np.hypot(yy - 19.5, xx - 39.5) / 20
    )
    cells = cells_from_maps(nuclei, maps)
    assert (cells[8:32, 10:30] == 1).all() and (cells[8:32, 30:50] == 2).all()
    np.testing.assert_array_equal(cells == 3, nuclei == 3)
    assert not cells[34:38, 2:8].any()


def test_cell_model_maps_of_another_shape_are_refused():
    nuclei, _ = two_nuclei_in_a_bright_square()
    with pytest.raises(SettingError, match="maps have shape"):
        cells_from_maps(nuclei, np.zeros((2, 40, 61), np.float32))


# ----------------------------------------------------------------------------- cytoplasm


def test_cytoplasm_has_no_nucleus_pixel_when_nuclei_are_not_shrunk():
    nuclei, stain = two_nuclei_in_a_bright_square()
    cells = grow_cells(nuclei, stain)
    ring = cytoplasm(cells, nuclei, shrink_nuclei=False)
    assert not ring[nuclei > 0].any()
    np.testing.assert_array_equal(ring[nuclei == 0], cells[nuclei == 0])


def test_cytoplasm_keeps_the_nucleus_outline_by_default_as_cellprofiler_does():
    nuclei, stain = two_nuclei_in_a_bright_square()
    cells = grow_cells(nuclei, stain)
    ring = cytoplasm(cells, nuclei)
    # a 4 x 4 nucleus: its 12 outline pixels stay in the cytoplasm, its 4 inner ones do not
    assert (ring[18:22, 18:22] == 1).sum() == 12
    assert not ring[19:21, 19:21].any()


def test_a_cell_its_nucleus_fills_has_an_empty_cytoplasm_without_shrinking():
    nuclei = np.zeros((10, 10), np.uint16)
    nuclei[2:5, 2:5] = 1
    nuclei[6:9, 6:9] = 2
    cells = nuclei.copy()
    cells[5, 5:9] = 2
    assert not (cytoplasm(cells, nuclei, shrink_nuclei=False) == 1).any()
    assert (cytoplasm(cells, nuclei, shrink_nuclei=False) == 2).sum() == 4
    assert (cytoplasm(cells, nuclei) == 1).sum() == 8  # the outline ring, never empty


# ----------------------------------------------------------------------------- border


def test_discarding_the_border_drops_cells_and_their_nuclei_and_renumbers_both_alike():
    nuclei = np.zeros((30, 30), np.uint16)
    nuclei[3:6, 3:6] = 1  # its cell reaches the border
    nuclei[12:15, 12:15] = 2
    nuclei[22:25, 20:23] = 4  # a gap at 3
    cells = grow_cells(nuclei, np.zeros((30, 30)), CellSettings(method="distance", distance=3))
    kept_nuclei, kept_cells = discard_border(nuclei, cells)
    assert set(np.unique(kept_nuclei)) == set(np.unique(kept_cells)) == {0, 1, 2}
    np.testing.assert_array_equal(kept_nuclei == 1, nuclei == 2)
    np.testing.assert_array_equal(kept_cells == 2, cells == 4)
    assert not kept_cells[0].any() and not kept_cells[:, 0].any()


# ----------------------------------------------------------------------------- settings


def test_default_settings_are_cellprofilers():
    settings = CellSettings()
    assert settings.method == "propagation"
    assert settings.regularization_factor == 0.05
    assert settings.distance == 10
    assert settings.threshold_method == "minimum_cross_entropy"
    assert settings.threshold_smoothing_scale == 0.0
    assert settings.threshold_correction_factor == 1.0
    assert settings.threshold_bounds == (0.0, 1.0)
    assert settings.fill_holes and settings.shrink_nuclei and not settings.discard_border
    assert set(CELL_METHODS) == {"propagation", "watershed", "distance", "model"}


@pytest.mark.parametrize(
    ("bad", "sentence"),
    [
        ({"method": "flood"}, "cell method 'flood' is not one of"),
        ({"regularization_factor": -1}, "regularization factor -1 must be"),
        ({"distance": 2.5}, "cell distance 2.5 must be a whole number"),
        ({"threshold_method": "triangle"}, "cell threshold method 'triangle'"),
        ({"otsu_classes": 4}, "Otsu classes 4 must be 2 or 3"),
        ({"middle_class": "both"}, "middle class 'both'"),
        ({"threshold_correction_factor": float("nan")}, "threshold correction factor nan"),
        ({"threshold_bounds": (0.5, 0.2)}, "threshold bounds"),
        ({"manual_threshold": 2.0}, "manual threshold 2.0 must be from 0 to 1"),
        ({"fill_holes": "yes"}, "fill holes must be yes or no"),
        ({"method": "model"}, "the model cell method needs a cell model"),
    ],
)
def test_each_bad_setting_is_refused_in_one_sentence(bad, sentence):
    with pytest.raises(SettingError, match=sentence) as caught:
        CellSettings(**bad)
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")


# ----------------------------------------------------------------------------- one call


def test_cell_objects_gives_three_sets_numbered_alike_with_the_border_setting():
    nuclei = np.zeros((30, 30), np.uint16)
    nuclei[3:6, 3:6] = 1  # its cell reaches the border
    nuclei[12:15, 12:15] = 2
    settings = CellSettings(method="distance", distance=3, discard_border=True)
    objects = cell_objects(nuclei, np.zeros((30, 30)), settings)
    assert set(objects) == {"Nuclei", "Cells", "Cytoplasm"}
    for labels in objects.values():
        assert set(np.unique(labels)) == {0, 1}
    np.testing.assert_array_equal(objects["Nuclei"] == 1, nuclei == 2)
    assert not objects["Cytoplasm"][13, 13]  # the nucleus's inner pixel is not cytoplasm


def test_cell_objects_reads_maps_for_the_model_method():
    nuclei, _ = two_nuclei_in_a_bright_square()
    maps = np.zeros((2, 40, 60), np.float32)
    maps[0, 8:32, 10:50] = 0.9
    objects = cell_objects(nuclei, maps, CellSettings(method="model", model="cells.safetensors"))
    assert set(np.unique(objects["Cells"][8:32, 10:50])) == {1, 2}
