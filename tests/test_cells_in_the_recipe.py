"""Cells and cytoplasm as more objects of the one field recipe, on every face."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner
from plate_helpers import make_plate, threshold_model

from cellseg_hcs.cli import main
from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.cells import BLANK_CELL_NOTE
from cellseg_hcs.field.pipeline import FieldChannels
from cellseg_hcs.io.tables import read_features
from cellseg_hcs.plate import run_plate
from cellseg_hcs.settings import FieldSettings


@pytest.fixture(scope="module")
def model():
    return threshold_model()


def _field(seed: int = 0, shape=(96, 120)) -> FieldChannels:
    """Nuclei as bright disks, each inside a brighter square of cytoplasm stain."""
    rng = np.random.default_rng(seed)
    dna = rng.integers(90, 110, size=shape).astype(np.uint16)
    stain = rng.integers(5, 10, size=shape).astype(np.uint16)
    for number, (y, x) in enumerate([(25, 25), (25, 80), (70, 50)]):
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        dna[(yy - y) ** 2 + (xx - x) ** 2 <= 36] = 1500
        stain[y - 15 : y + 15, x - 15 : x + 15] = 800 + 10 * number
    return FieldChannels({"DNA": dna, "Actin": stain}, "field B03_0")


def _cells(**cells) -> FieldSettings:
    return FieldSettings(channel="DNA", diameter="native", cells={"channel": "Actin", **cells})


def test_each_nucleus_grows_one_cell_and_the_cytoplasm_is_the_rest(model):
    result = model.pipeline(_cells()).run(_field())
    nuclei, cells, cytoplasm = (result.objects[n] for n in ("Nuclei", "Cells", "Cytoplasm"))
    assert nuclei.max() == cells.max() == cytoplasm.max() == 3
    for k in (1, 2, 3):
        assert set(np.unique(cells[nuclei == k])) == {k}  # cell k holds nucleus k
        assert 850 <= (cells == k).sum() <= 950  # the 30 x 30 square
        assert not np.any((cytoplasm == k) & (nuclei == k) & (cells != k))
    np.testing.assert_array_equal(result.parents[("Cells", "Nuclei")], [1, 2, 3])
    assert "Seconds_Cells" in result.seconds


def test_one_row_per_cell_with_three_compartments_and_relationships(model):
    result = model.pipeline(_cells()).run(
        _field(), features="minimal", metadata={"Metadata_Well": "B03"}
    )
    table = result.features
    assert len(table) == 3 and list(table["ObjectNumber"]) == [1, 2, 3]
    for compartment in ("Cells", "Cytoplasm", "Nuclei"):
        for column in ("AreaShape_Area", "Intensity_MeanIntensity_Actin", "Location_Center_X"):
            assert f"{compartment}_{column}" in table
    assert (table["Cells_AreaShape_Area"] > table["Nuclei_AreaShape_Area"]).all()
    assert list(table["Cells_Parent_Nuclei"]) == [1, 2, 3]
    assert list(table["Cytoplasm_Parent_Cells"]) == list(table["Cytoplasm_Parent_Nuclei"])
    assert list(table["Nuclei_Children_Cells_Count"]) == [1, 1, 1]
    assert (table["Metadata_Well"] == "B03").all()


def test_a_blank_cell_channel_gives_each_nucleus_as_its_cell_and_a_note(model):
    field = _field()
    field.planes["Actin"] = np.zeros_like(field.planes["Actin"])
    result = model.pipeline(_cells()).run(field)
    np.testing.assert_array_equal(result.objects["Cells"], result.objects["Nuclei"])
    assert BLANK_CELL_NOTE in result.notes


@pytest.mark.parametrize(
    ("cells", "sentence"),
    [
        ({"channel": "DNA"}, "the cell channel 'DNA' is the nuclei's channel"),
        ({"channel": "Tubulin"}, "channel 'Tubulin' is not in field B03_0"),
    ],
)
def test_a_wrong_cell_channel_is_one_sentence(model, cells, sentence):
    settings = FieldSettings(channel="DNA", cells=cells)
    with pytest.raises(SettingError, match=sentence):
        model.pipeline(settings).run(_field())


def test_cells_need_a_cell_channel():
    with pytest.raises(SettingError, match="cells need a cell channel"):
        FieldSettings(cells={"method": "distance"})


def test_segment_writes_cells_and_cytoplasm_beside_the_nuclei(tmp_path, model):
    field = _field()
    tifffile.imwrite(tmp_path / "a.tif", np.stack([field.planes["DNA"], field.planes["Actin"]]))
    model_file = model.save(tmp_path / "m.safetensors")
    args = ["segment", tmp_path / "a.tif", "--out", tmp_path / "o", "--model", model_file]
    args += ["--channel", "0", "--cells-channel", "1", "--diameter", "native", "--no-progress"]
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exit_code == 0, result.output
    written = {p.name for p in (tmp_path / "o").iterdir()}
    assert written == {"a_labels.tif", "a_cells_labels.tif", "a_cytoplasm_labels.tif"}
    cells = tifffile.imread(tmp_path / "o" / "a_cells_labels.tif")
    assert cells.max() == tifffile.imread(tmp_path / "o" / "a_labels.tif").max() == 3


def test_cell_options_without_a_cell_channel_are_refused(tmp_path):
    result = CliRunner().invoke(
        main, ["segment", "x.tif", "--out", str(tmp_path), "--cells-method", "distance"]
    )
    assert result.exit_code == 2 and "need --cells-channel" in result.output


@pytest.fixture(scope="module")
def cells_run(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("cells_plate")
    truth = make_plate(folder / "plate.zarr", extra_channel=True)
    result = run_plate(
        folder / "plate.zarr",
        folder / "out",
        model=model,
        channel="DNA",
        cells={"channel": "Actin", "method": "distance"},
        features="minimal",
        workers=1,
        progress=False,
    )
    return folder, truth, result


def test_a_plate_run_writes_cells_and_cytoplasm_labels_and_one_row_per_cell(cells_run):
    import zarr

    folder, truth, result = cells_run
    assert (result.images["status"] == "ok").all()
    assert 10 < result.measured_diameter < 15  # "auto" measured the nuclei (disks of 13 px)
    counts = result.images.set_index(["Metadata_Well", "Metadata_Site"])
    for name in ("Count_Nuclei", "Count_Cells", "Count_Cytoplasm"):
        assert counts[name].to_dict() == truth
    for path in result.images["Metadata_FieldPath"]:
        labels = zarr.open_group(str(folder / "plate.zarr" / path / "labels"), mode="r")
        assert sorted(labels.attrs["ome"]["labels"]) == ["Cells", "Cytoplasm", "Nuclei"]
    cells = read_features(folder / "out")
    assert len(cells) == sum(truth.values())
    assert {"Cells_AreaShape_Area", "Cytoplasm_Intensity_MeanIntensity_Actin"} <= set(cells)
    assert {"Cells_Parent_Nuclei", "Nuclei_Children_Cells_Count"} <= set(cells)


def test_pycytominer_runs_on_the_cell_table_with_its_default_compartments(cells_run):
    from pycytominer import aggregate, feature_select, normalize

    folder, truth, _ = cells_run
    cells = read_features(folder / "out")
    profiles = aggregate(cells, compute_object_count=True)
    assert len(profiles) == 2 and "Cells_AreaShape_Area" in profiles
    normalized = normalize(profiles, samples="all")
    selected = feature_select(normalized, operation=["variance_threshold"])
    assert any(c.startswith("Cytoplasm_") for c in normalized.columns)
    assert isinstance(selected, pd.DataFrame) and len(selected) == 2


def test_the_run_command_grows_cells_on_the_named_channel(tmp_path, model):
    make_plate(tmp_path / "plate.zarr", extra_channel=True, wells=("B02",), sites=1)
    model_file = model.save(tmp_path / "m.safetensors")
    args = ["run", tmp_path / "plate.zarr", "--out", tmp_path / "out", "--model", model_file]
    args += ["--cells-channel", "Actin", "--cells-method", "watershed", "--no-progress"]
    args += ["--measure-channels", "Actin", "--features", "minimal"]
    result = CliRunner().invoke(main, list(map(str, args)))
    assert result.exit_code == 0, result.output
    assert " Cells, " in result.output
    cells = read_features(tmp_path / "out")
    assert "Cells_Intensity_MeanIntensity_Actin" in cells
    assert "Cells_Intensity_MeanIntensity_DNA" not in cells  # only the channels asked for


def test_a_plate_run_refuses_the_nuclei_channel_as_the_cell_channel(tmp_path, model):
    make_plate(tmp_path / "plate.zarr", extra_channel=True)
    with pytest.raises(SettingError, match="'DNA' is the nuclei's channel of plate"):
        run_plate(
            tmp_path / "plate.zarr",
            tmp_path / "out",
            model=model,
            channel="DNA",
            cells={"channel": "DNA"},
            progress=False,
        )
    assert not (tmp_path / "out").exists()


def test_the_model_method_splits_a_cell_models_maps_from_the_nuclei(tmp_path, model):
    """A two-channel cell model (cell stain, nuclei) gives maps; each nucleus seeds its cell."""
    import torch

    from cellseg_hcs.model.model import Model, ModelInfo
    from cellseg_hcs.model.unet import UNet

    torch.manual_seed(0)
    options = {"in_channels": 2, "out_channels": 2, "depth": 2, "width": 4}
    cell_model = Model(UNet(**options), ModelInfo(network=options, object_name="Cells"))
    path = cell_model.save(tmp_path / "cells.safetensors")
    settings = _cells(method="model", model=str(path), foreground_threshold=0.01)
    result = model.pipeline(settings).run(_field())
    nuclei, cells = result.objects["Nuclei"], result.objects["Cells"]
    assert cells.max() == nuclei.max() == 3
    for k in (1, 2, 3):
        assert np.all(cells[nuclei == k] == k)  # every cell holds its whole nucleus
