"""The plate run: outputs, resume, broken fields and input checks (issue 4)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner
from plate_helpers import make_plate, threshold_model

from cellseg_hcs.cli import main
from cellseg_hcs.errors import SettingError
from cellseg_hcs.io.plate import ome_attrs, open_plate
from cellseg_hcs.io.tables import read_features
from cellseg_hcs.plate.run import run_plate

REQUIRED_COLUMNS = [
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "ImageNumber",
    "ObjectNumber",
    "Metadata_ObjectNumber",
    "Nuclei_Number_Object_Number",
    "Nuclei_Location_Center_X",
    "Nuclei_Location_Center_Y",
    "Nuclei_AreaShape_Area",
    "Nuclei_Intensity_MeanIntensity_DNA",
]


@pytest.fixture(scope="module")
def client():
    """An in-process dask cluster: the same scheduler and task code, no process start-up."""
    from distributed import Client

    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        yield client


@pytest.fixture(scope="module")
def model():
    return threshold_model()


def _run(plate, out, client, model, **options):
    options.setdefault("features", "minimal")
    return run_plate(plate, out, model=model, scheduler=client, progress=False, **options)


def _features(out) -> pd.DataFrame:
    return read_features(out)


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
def test_run_writes_labels_features_images_and_manifest(tmp_path, client, model, ngff_version):
    truth = make_plate(tmp_path / "plate.zarr", ngff_version=ngff_version)
    result = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)

    plate = open_plate(tmp_path / "plate.zarr")
    for field in plate.fields:
        image = zarr.open_group(str(plate.path / field.path), mode="r")
        label = zarr.open_group(str(plate.path / field.path / "labels" / "Nuclei"), mode="r")
        label_attrs = ome_attrs(label)
        assert label_attrs["image-label"]["source"]["image"] == "../../"
        assert ome_attrs(image.get("labels"))["labels"] == ["Nuclei"]
        image_levels = [d["path"] for d in ome_attrs(image)["multiscales"][0]["datasets"]]
        label_levels = [d["path"] for d in label_attrs["multiscales"][0]["datasets"]]
        assert label_levels == image_levels and len(label_levels) == 2
        full = label[label_levels[0]][...]
        assert full.dtype.kind == "u"
        assert full.shape == image[image_levels[0]].shape[1:]
        assert full.max() == truth[(field.well, field.site)]

    images = result.images
    assert len(images) == len(truth)
    assert images.set_index(["Metadata_Well", "Metadata_Site"])["Count_Nuclei"].to_dict() == truth
    assert (images["status"] == "ok").all()
    assert {"Seconds_Predict", "Seconds_Measure", "error"} <= set(images.columns)
    assert pd.read_parquet(tmp_path / "out" / "images.parquet").equals(images)

    features = _features(tmp_path / "out")
    assert list(features.columns[:9]) == REQUIRED_COLUMNS[:9]
    assert set(REQUIRED_COLUMNS) <= set(features.columns)
    assert len(features) == sum(truth.values())
    assert not features.duplicated(["Metadata_Well", "Metadata_Site", "ObjectNumber"]).any()
    part = tmp_path / "out" / "features" / "plate=plate" / "well=B02" / "B02_1.parquet"
    import pyarrow.parquet as pq

    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(part).num_rows == truth[("B02", 1)]

    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["model"]["hash"] == model.hash
    assert {"torch", "zarr", "dask", "cp-measure"} <= set(manifest["dependencies"])
    from cellseg_hcs.runtime import BACKENDS

    assert manifest["backend"]["name"] in BACKENDS and manifest["backend"]["reason"]
    assert set(images["backend"]) <= set(BACKENDS)  # what each field actually ran on
    assert manifest["parameters"]["channels"] == ["DNA"]
    assert manifest["parameters"]["features"] == ["location", "shape", "intensity"]
    assert manifest["plate"]["ngff_version"] == ngff_version


def test_rerun_skips_finished_fields_and_ends_with_the_same_tables(tmp_path, client, model):
    make_plate(tmp_path / "plate.zarr")
    first = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    features = _features(tmp_path / "out")
    second = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    assert (first.computed, second.computed, second.skipped) == (4, 0, 4)
    assert second.images.equals(first.images)
    assert _features(tmp_path / "out").equals(features)


def test_overwrite_recomputes_every_field(tmp_path, client, model):
    make_plate(tmp_path / "plate.zarr")
    _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    before = (tmp_path / "out" / "status" / "B02_0.json").stat().st_mtime_ns
    again = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, overwrite=True)
    assert again.computed == 4
    assert (tmp_path / "out" / "status" / "B02_0.json").stat().st_mtime_ns > before


def test_wells_option_runs_only_those_wells_and_later_runs_add_to_the_tables(
    tmp_path, client, model
):
    truth = make_plate(tmp_path / "plate.zarr")
    only = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, wells=["b3"])
    assert set(only.images["Metadata_Well"]) == {"B03"}
    both = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    assert (both.computed, both.skipped, len(both.images)) == (2, 2, len(truth))


def _break_fields(plate_path: Path) -> None:
    """B02_0: a corrupt chunk; B02_1: all zeros; B03_0: bool pixels; B03_1: no cells."""
    plate = open_plate(plate_path)
    fields = {f.name: f for f in plate.fields}

    def full_level(name):
        group = zarr.open_group(str(plate_path / fields[name].path), mode="a")
        return group, ome_attrs(group)["multiscales"][0]["datasets"][0]["path"]

    group, level = full_level("B02_0")
    chunk = next(
        p
        for p in (plate_path / fields["B02_0"].path / level).rglob("*")
        if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs")
    )
    chunk.write_bytes(b"this is not a compressed chunk")
    group, level = full_level("B02_1")
    group[level][...] = 0
    group, level = full_level("B03_0")
    shape = group[level].shape
    group.create_array(level, shape=shape, dtype=bool, overwrite=True, chunks=group[level].chunks)
    group, level = full_level("B03_1")
    group[level][...] = 100


def test_broken_fields_are_recorded_and_the_rest_of_the_plate_completes(tmp_path, client, model):
    truth = make_plate(tmp_path / "plate.zarr", wells=("B02", "B03", "C05"))
    _break_fields(tmp_path / "plate.zarr")
    result = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    rows = result.images.set_index(["Metadata_Well", "Metadata_Site"])

    assert rows.loc[("B02", 0), "status"] == "failed"
    assert "B02_0" in rows.loc[("B02", 0), "error"]
    assert rows.loc[("B02", 1), "status"] == "empty"
    assert "blank" in rows.loc[("B02", 1), "error"]
    assert rows.loc[("B03", 0), "status"] == "failed"
    assert "pixel type bool" in rows.loc[("B03", 0), "error"]
    assert rows.loc[("B03", 1), "status"] == "empty"
    assert rows.loc[("B03", 1), "error"] == "no objects found"
    for site in (0, 1):
        assert rows.loc[("C05", site), "status"] == "ok"
        assert rows.loc[("C05", site), "Count_Nuclei"] == truth[("C05", site)]

    features = _features(tmp_path / "out")
    assert set(features["Metadata_Well"]) == {"C05"}
    assert not (tmp_path / "out/features/plate=plate/well=B02/B02_0.parquet").exists()
    empty = pd.read_parquet(tmp_path / "out/features/plate=plate/well=B03/B03_1.parquet")
    assert len(empty) == 0 and list(empty.columns) == list(features.columns)


def test_failed_fields_are_tried_again_on_the_next_run(tmp_path, client, model):
    truth = make_plate(tmp_path / "plate.zarr")
    pristine = tmp_path / "pristine.zarr"
    shutil.copytree(tmp_path / "plate.zarr", pristine)
    _break_fields(tmp_path / "plate.zarr")
    first = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    assert first.failed == 2
    shutil.rmtree(tmp_path / "plate.zarr")  # the data is repaired (re-exported)
    shutil.copytree(pristine, tmp_path / "plate.zarr")
    second = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    assert second.failed == 0
    assert (
        second.images.set_index(["Metadata_Well", "Metadata_Site"])["Count_Nuclei"].to_dict()
        == truth
    )


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def model_file(tmp_path, model) -> Path:
    return model.save(tmp_path / "threshold.safetensors")


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _assert_stopped_before_writing(result, out: Path, plate: Path | None, *words: str):
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message
    assert not out.exists()
    if plate is not None:
        assert not list(plate.rglob("labels"))


def test_a_path_that_is_not_a_plate_stops_the_run_with_exit_2(tmp_path, model_file):
    folder = tmp_path / "not-a-plate"
    folder.mkdir()
    result = _cli("run", folder, "--out", tmp_path / "out", "--model", model_file)
    _assert_stopped_before_writing(result, tmp_path / "out", None, str(folder), "not")


def test_an_unknown_channel_stops_the_run_with_exit_2(tmp_path, model_file):
    make_plate(tmp_path / "plate.zarr")
    result = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--channel",
        "GFP",
    )
    _assert_stopped_before_writing(
        result, tmp_path / "out", tmp_path / "plate.zarr", "'GFP'", "DNA"
    )


def test_a_model_file_that_is_not_a_model_stops_the_run_with_exit_2(tmp_path):
    make_plate(tmp_path / "plate.zarr")
    bogus = tmp_path / "model.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    result = _cli("run", tmp_path / "plate.zarr", "--out", tmp_path / "out", "--model", bogus)
    _assert_stopped_before_writing(result, tmp_path / "out", tmp_path / "plate.zarr", str(bogus))


def test_an_unknown_well_stops_the_run_with_exit_2(tmp_path, model_file):
    make_plate(tmp_path / "plate.zarr")
    result = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--wells",
        "H12",
    )
    _assert_stopped_before_writing(result, tmp_path / "out", tmp_path / "plate.zarr", "H12")


def test_a_folder_with_another_run_is_refused_without_overwrite(tmp_path, client, model):
    make_plate(tmp_path / "plate.zarr")
    _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)

    with pytest.raises(SettingError, match="different --features"):
        _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, features="default")
    with pytest.raises(SettingError, match=r"different number of test-time flips \(--flips\)"):
        _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, flips=2)
    with pytest.raises(SettingError, match=r"different network scale \(--diameter\)"):
        _run(
            tmp_path / "plate.zarr",
            tmp_path / "out",
            client,
            model,
            diameter=2 * model.info.working_diameter,
        )


def test_a_plate_channel_can_be_given_by_its_index(tmp_path, client, model):
    make_plate(tmp_path / "plate.zarr")
    _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, channel="0")
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["parameters"]["channels"] == ["DNA"]


def test_empty_plate_table_columns_match_a_full_field(tmp_path, client, model):
    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1)
    group = zarr.open_group(str(tmp_path / "plate.zarr" / "B/02/0"), mode="a")
    level = ome_attrs(group)["multiscales"][0]["datasets"][0]["path"]
    group[level][...] = np.uint16(100)
    result = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, features="default")
    assert result.images["status"].tolist() == ["empty"]
    table = pd.read_parquet(tmp_path / "out/features/plate=plate/well=B02/B02_0.parquet")
    assert len(table) == 0
    assert "Nuclei_Texture_Contrast_DNA_3_00_256" in table.columns
    assert "Nuclei_Neighbors_NumberOfNeighbors_Expanded" in table.columns


def test_run_command_prints_where_the_labels_and_tables_are(tmp_path, client, model_file):
    truth = make_plate(tmp_path / "plate.zarr")
    address = client.scheduler.address  # the in-process cluster, joined as --scheduler
    result = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--features",
        "minimal",
        "--scheduler",
        address,
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert (
        f"4 field(s): 4 computed, 0 already done, 0 failed; {sum(truth.values())} Nuclei"
        in result.output
    )
    assert f"labels:   {tmp_path / 'plate.zarr' / 'B/02/0/labels/Nuclei'}" in result.output
    assert str(tmp_path / "out" / "images.parquet") in result.output
    again = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--features",
        "minimal",
        "--scheduler",
        address,
        "--no-progress",
    )
    assert "0 computed, 4 already done" in again.output


def test_run_command_exits_1_when_some_fields_failed_and_lists_them(tmp_path, client, model_file):
    make_plate(tmp_path / "plate.zarr")
    _break_fields(tmp_path / "plate.zarr")
    result = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--features",
        "minimal",
        "--scheduler",
        client.scheduler.address,
        "--no-progress",
    )
    assert result.exit_code == 1  # an overnight script sees that fields are missing
    assert "2 failed" in result.output
    assert "failed B02 site 0" in result.output and "failed B03 site 0" in result.output
    assert (tmp_path / "out" / "images.parquet").is_file()


def test_workers_and_scheduler_together_are_refused(tmp_path, model_file):
    make_plate(tmp_path / "plate.zarr")
    result = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--workers",
        "2",
        "--scheduler",
        "tcp://127.0.0.1:8786",
    )
    _assert_stopped_before_writing(
        result, tmp_path / "out", tmp_path / "plate.zarr", "--workers", "--scheduler"
    )


def test_diameter_runs_the_network_at_scale_and_finds_the_same_objects(tmp_path, client, model):
    make_plate(tmp_path / "plate.zarr")
    native = _run(tmp_path / "plate.zarr", tmp_path / "native", client, model)
    scaled = _run(
        tmp_path / "plate.zarr",
        tmp_path / "scaled",
        client,
        model,
        diameter=model.info.working_diameter * 1.25,
        overwrite=True,
    )
    manifest = json.loads((tmp_path / "scaled" / "run.json").read_text())
    assert manifest["parameters"]["scale"] == pytest.approx(0.8)
    assert (
        scaled.images["Count_Nuclei"].to_numpy() == native.images["Count_Nuclei"].to_numpy()
    ).all()


def test_a_plate_name_with_slashes_stays_inside_out_and_reads_back_unchanged(
    tmp_path, client, model
):
    from plate_helpers import disk_field

    from cellseg_hcs.io.convert import write_plate

    write_plate(
        tmp_path / "plate.zarr",
        {("B02", 0): disk_field(0, 3)},
        channel_names=["DNA"],
        plate_name="../2024/05/12 P1",
    )
    _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    written = list((tmp_path / "out" / "features").rglob("*.parquet"))
    assert len(written) == 1 and (tmp_path / "out") in written[0].parents
    assert set(_features(tmp_path / "out")["Metadata_Plate"]) == {"../2024/05/12 P1"}


def test_another_models_run_does_not_silently_replace_a_runs_labels(tmp_path, client, model):
    from cellseg_hcs.io.plate import labels_provenance

    make_plate(tmp_path / "plate.zarr")
    other = threshold_model()
    other.info.metrics = {"note": "another model"}  # another hash, same labels
    _run(tmp_path / "plate.zarr", tmp_path / "a", client, model)
    field = open_plate(tmp_path / "plate.zarr").fields[0]
    # Run b would replace the labels that run a's tables describe: refused, nothing written.
    with pytest.raises(
        SettingError,
        match=f"already holds labels/Nuclei made by model {model.hash}.*another --object name",
    ):
        _run(tmp_path / "plate.zarr", tmp_path / "b", client, other)
    assert not (tmp_path / "b").exists()
    assert labels_provenance(tmp_path / "plate.zarr", field, "Nuclei")["model_hash"] == model.hash
    # Under another object name both sets of labels live side by side.
    _run(tmp_path / "plate.zarr", tmp_path / "b", client, other, object_name="NucleiB")
    assert labels_provenance(tmp_path / "plate.zarr", field, "Nuclei")["model_hash"] == model.hash
    # Asked to replace them, it does; run a, resumed, then finds its labels gone and (asked
    # to overwrite in its turn) makes them again.
    _run(tmp_path / "plate.zarr", tmp_path / "c", client, other, overwrite=True)
    assert labels_provenance(tmp_path / "plate.zarr", field, "Nuclei")["model_hash"] == other.hash
    with pytest.raises(SettingError, match="already holds labels/Nuclei"):
        _run(tmp_path / "plate.zarr", tmp_path / "a", client, model)
    again = _run(tmp_path / "plate.zarr", tmp_path / "a", client, model, overwrite=True)
    assert again.computed == 4
    assert labels_provenance(tmp_path / "plate.zarr", field, "Nuclei")["model_hash"] == model.hash


def _disk_plate(path, counts: dict, radius: int) -> None:
    from plate_helpers import disk_field

    from cellseg_hcs.io.convert import write_plate

    write_plate(
        path,
        {key: disk_field(i, n, (320, 320), radius) for i, (key, n) in enumerate(counts.items())},
        channel_names=["DNA"],
    )


@pytest.mark.parametrize(("radius", "expected_scale"), [(25, 30 / 51), (12, 1.0)])
def test_diameter_auto_measures_the_first_fields_and_runs_the_plate_at_one_scale(
    tmp_path, client, model, radius, expected_scale, monkeypatch
):
    # 3 + 4 objects in the first two fields are too few to measure; the third completes 8.
    counts = {("B02", 0): 3, ("B02", 1): 4, ("B03", 0): 2, ("B03", 1): 5}
    _disk_plate(tmp_path / "plate.zarr", counts, radius)
    result = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, diameter="auto")
    parameters = json.loads((tmp_path / "out" / "run.json").read_text())["parameters"]
    assert parameters["diameter"] == "auto"
    assert parameters["measured_diameter"] == pytest.approx(2 * radius + 1, abs=1.5)
    assert parameters["scale"] == pytest.approx(expected_scale, rel=0.03)
    assert result.scale == parameters["scale"]
    assert result.measured_diameter == parameters["measured_diameter"]
    assert sorted(result.images["Count_Nuclei"]) == sorted(counts.values())

    # A rerun (here: another well) takes the first run's scale without measuring again.
    import cellseg_hcs.field.scale as scaling

    monkeypatch.setattr(scaling, "auto_scale", lambda *a, **k: pytest.fail("measured again"))
    again = _run(
        tmp_path / "plate.zarr", tmp_path / "out", client, model, diameter="auto", wells=["B03"]
    )
    assert again.skipped == 2 and again.scale == result.scale


def test_diameter_auto_with_too_few_objects_keeps_the_fields_own_scale(tmp_path, client, model):
    _disk_plate(tmp_path / "plate.zarr", {("B02", 0): 1, ("B02", 1): 2, ("B03", 0): 1}, 25)
    result = _run(tmp_path / "plate.zarr", tmp_path / "out", client, model, diameter="auto")
    assert result.scale == 1.0 and result.measured_diameter == pytest.approx(51, abs=1.5)


def test_the_run_command_says_what_diameter_auto_measured(tmp_path, model_file):
    _disk_plate(tmp_path / "plate.zarr", {("B02", 0): 4, ("B02", 1): 5}, 25)
    result = _cli(
        "run",
        tmp_path / "plate.zarr",
        "--out",
        tmp_path / "out",
        "--model",
        model_file,
        "--features",
        "minimal",
        "--diameter",
        "auto",
        "--workers",
        "1",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert re.search(
        r"diameter: (50|51) px measured on the first fields; the network ran at "
        r"0\.(59|6)x",
        result.output,
    ), result.output


def test_pycytominer_aggregates_a_plate_run_with_object_counts_and_its_defaults(
    tmp_path, client, model
):
    """``ImageNumber`` and ``Metadata_ObjectNumber`` make pycytominer's defaults work."""
    from pycytominer import aggregate

    truth = make_plate(tmp_path / "plate.zarr")
    _run(tmp_path / "plate.zarr", tmp_path / "out", client, model)
    cells = _features(tmp_path / "out")
    assert (cells["Metadata_ObjectNumber"] == cells["ObjectNumber"]).all()
    numbers = cells.groupby(["Metadata_Well", "Metadata_Site"])["ImageNumber"].unique()
    assert sorted(number[0] for number in numbers) == [1, 2, 3, 4]  # one per field
    profiles = aggregate(cells, compute_object_count=True)
    counts = profiles.set_index("Metadata_Well")["Metadata_Object_Count"].to_dict()
    assert counts == {
        "B02": truth[("B02", 0)] + truth[("B02", 1)],
        "B03": truth[("B03", 0)] + truth[("B03", 1)],
    }
