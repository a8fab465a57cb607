"""The field recipe: one place that turns a field's channels into named objects."""

from __future__ import annotations

import numpy as np
import pytest
from plate_helpers import disk_field, threshold_model
from scipy import ndimage as ndi

from cellseg_hcs.errors import InputError, SettingError
from cellseg_hcs.field.pipeline import BLANK_NOTE, FieldChannels, FieldPipeline
from cellseg_hcs.settings import FieldSettings


@pytest.fixture(scope="module")
def model():
    return threshold_model()


def _pipeline(model, **settings):
    return FieldPipeline(FieldSettings(**settings), model=model)


def test_run_returns_named_objects_timings_and_the_scale(model):
    result = _pipeline(model, diameter="native").run(disk_field(0, 6))
    assert result.primary == "Nuclei" and set(result.objects) == {"Nuclei"}
    assert result.count == 6 and result.scale == 1.0 and result.diameter is None
    assert {"Seconds_Normalize", "Seconds_Predict", "Seconds_Postprocess"} <= set(result.seconds)
    assert result.features is None and result.maps is None


def test_the_stages_called_in_order_give_what_run_gives(model):
    """The faces that overlap stages (files, plates) get exactly the labels of run()."""
    image = disk_field(3, 9, shape=(150, 170))
    pipeline = _pipeline(model, diameter="native")
    field = pipeline.prepare(FieldChannels.from_array(image))
    maps = pipeline.predict(field, pipeline.first_scale())
    staged = pipeline.objects(field, maps, pipeline.first_scale())
    np.testing.assert_array_equal(staged.labels, pipeline.run(image).labels)


@pytest.mark.parametrize("diameter", [8.0, 15.0, 60.0])
def test_a_given_diameter_runs_the_network_at_the_model_scale(model, diameter):
    pipeline = _pipeline(model, diameter=diameter)
    assert pipeline.first_scale() == pytest.approx(model.info.working_diameter / diameter)
    assert pipeline.run(disk_field(1, 5)).scale == pytest.approx(pipeline.first_scale())


def test_auto_runs_again_only_when_the_objects_are_far_from_the_model_size(model):
    small = disk_field(1, 12, shape=(200, 200))  # disks of 13 px for a model of 30
    result = _pipeline(model, diameter="auto").run(small)
    assert result.scale > 2 and 11 < result.diameter < 15
    # A given scale (a plate measures "auto" once for all its fields) is never measured again.
    again = _pipeline(model, diameter="auto").run(small, scale=1.0)
    assert again.scale == 1.0 and again.diameter is None


def test_measurement_is_one_row_per_object_with_the_channels_names(model):
    image = disk_field(2, 4)
    channels = FieldChannels({"DNA": image, "Actin": image[::-1].copy()}, "field B03_0")
    result = _pipeline(model, diameter="native").run(
        channels, features="minimal", metadata={"Metadata_Well": "B03"}
    )
    table = result.features
    assert len(table) == 4 and (table["Metadata_Well"] == "B03").all()
    assert {"Nuclei_Intensity_MeanIntensity_DNA", "Nuclei_Intensity_MeanIntensity_Actin"} <= set(
        table.columns
    )
    assert result.seconds["Seconds_Measure"] > 0


def test_a_blank_field_gives_no_objects_and_a_note(model):
    result = _pipeline(model).run(np.zeros((64, 64), np.uint16))
    assert result.count == 0 and result.notes == [BLANK_NOTE]


@pytest.mark.parametrize(
    ("pixels", "problem"),
    [
        (np.full((64, 64), np.nan, np.float32), "has NaN or infinite pixels."),
        (np.full((64, 64), np.inf, np.float32), "has NaN or infinite pixels."),
        (np.zeros((4, 64), np.uint16), "not a 2-D image of 8 pixels or more."),
        (np.zeros((64, 64), bool), "has pixel type bool"),
    ],
)
def test_unusable_pixels_are_one_sentence_naming_the_field(model, pixels, problem):
    with pytest.raises(InputError, match=f"field B03_0 .*{problem}"):
        _pipeline(model).run(FieldChannels({"DNA": pixels}, "field B03_0"))


def test_the_model_channel_is_chosen_by_index_or_name(model):
    image = disk_field(4, 5)
    channels = FieldChannels({"Actin": np.zeros_like(image), "DNA": image}, "the image")
    by_name = _pipeline(model, channel="DNA", diameter="native").run(channels)
    by_index = _pipeline(model, channel=1, diameter="native").run(channels)
    assert by_name.count == by_index.count == 5
    with pytest.raises(SettingError, match="the model reads 1 channel"):
        _pipeline(model, channel="Actin,DNA").run(channels)


# The shipped model's labels on the committed mnfinder test images, as the code before the
# one-recipe redesign made them (commit 403abbb, Model.segment with its defaults): the
# redesign must not change a single label.
LABELS_BEFORE_THE_REDESIGN = {
    "BAY18": (18, "130d9809ea666f74"),
    "hela_misseg": (9, "bee04084512cf352"),
    "2022-12-29-0004": (41, "8eb53725ef94c900"),
    "MCC13": (36, "40d4e799f25cfe78"),
}


@pytest.mark.parametrize("name", sorted(LABELS_BEFORE_THE_REDESIGN))
def test_the_shipped_model_labels_are_those_before_the_redesign(mnfinder_dir, name):
    import hashlib

    import tifffile

    import cellseg_hcs as cs

    path = next((mnfinder_dir / "images").glob(f"*{name}*.tif"))
    labels = cs.load_model("nuclei").segment(tifffile.imread(path))
    digest = hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]
    assert (int(labels.max()), digest) == LABELS_BEFORE_THE_REDESIGN[name]


def test_objects_outside_a_cells_row_get_a_table_of_their_own_with_their_parents():
    """Micronuclei: many per nucleus, so not columns of a cell's row but rows of their own,
    with ``Micronuclei_Parent_Nuclei``; each nucleus counts its children."""
    from cellseg_hcs.field.pipeline import FieldResult
    from cellseg_hcs.field.profile import cell_profiles, own_tables

    nuclei = np.zeros((60, 60), np.uint16)
    nuclei[5:20, 5:20], nuclei[30:50, 30:50] = 1, 2
    small = np.zeros_like(nuclei)
    small[22:24, 5:7], small[22:24, 10:12], small[52:54, 40:42] = 1, 2, 3
    result = FieldResult({"Nuclei": nuclei, "Micronuclei": small}, "Nuclei")
    result.parents[("Micronuclei", "Nuclei")] = np.array([1, 1, 2])
    planes = {"DNA": (nuclei > 0) * 500 + (small > 0) * 300 + 10}
    cells = cell_profiles(result, planes, "minimal", {"Metadata_Well": "B03"})
    assert list(cells["Nuclei_Children_Micronuclei_Count"]) == [2, 1]
    assert not any(c.startswith("Micronuclei_") for c in cells.columns)
    table = own_tables(result, planes, "minimal", {"Metadata_Well": "B03"})["Micronuclei"]
    assert list(table["Micronuclei_Parent_Nuclei"]) == [1, 1, 2]
    assert list(table["Micronuclei_AreaShape_Area"]) == [4, 4, 4]


def test_the_measure_threads_measure_nuclei_cells_and_cytoplasm_to_the_same_table(
    model, monkeypatch
):
    from cellseg_hcs.field import profile

    asked = []
    measure = profile.measure_objects

    def spy(*args, threads=1, **kwargs):
        asked.append(threads)
        return measure(*args, threads=threads, **kwargs)

    monkeypatch.setattr(profile, "measure_objects", spy)
    image = disk_field(2, 5)
    cytoplasm = ndi.gaussian_filter(image.astype(float), 6).astype(np.uint16)  # around nuclei
    channels = FieldChannels({"DNA": image, "Actin": cytoplasm})
    settings = FieldSettings(diameter="native", cells={"channel": "Actin"})
    alone = FieldPipeline(settings, model).run(channels, features="full")
    together = FieldPipeline(settings, model, measure_threads=2).run(channels, features="full")
    assert asked == [1, 1, 1, 2, 2, 2]  # cells, cytoplasm and nuclei, each way
    assert {"Cells_AreaShape_Area", "Cytoplasm_Granularity_1_Actin"} <= set(together.features)
    assert together.features.equals(alone.features)
