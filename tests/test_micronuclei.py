"""Micronuclei: their own object set, a parent nucleus each, and their metrics."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cellseg_hcs.cli import main
from cellseg_hcs.field.classes import object_class_probabilities, object_foreground
from cellseg_hcs.field.micronuclei import decode_objects
from cellseg_hcs.field.pipeline import FieldPipeline
from cellseg_hcs.field.profile import cell_profiles, own_tables
from cellseg_hcs.field.relations import (
    PARENT_RULES,
    drop_enclosed,
    nearest_centre_parents,
    nearest_parents,
    pixel_vote_parents,
    ring_share,
)
from cellseg_hcs.model.model import ModelInfo
from cellseg_hcs.settings import FieldSettings
from cellseg_hcs.training.metrics import matched_pairs
from cellseg_hcs.training.micronuclei import (
    MicronucleiTuner,
    MicronucleusScores,
    MicronucleusTruth,
    parents_from_map,
)

SHAPE = (64, 64)
NUCLEUS_SETTINGS = {
    "foreground_threshold": 0.5,
    "seeds": "peaks",
    "peak_height": 0.3,
    "min_size": 16,
    "min_score": 0.9,
}


def class_info(**extra) -> ModelInfo:
    return ModelInfo(
        network={"in_channels": 1, "out_channels": 4, "classes": 2, "depth": 3, "width": 4},
        outputs=("foreground", "centre", "class:nucleus", "class:micronucleus"),
        postprocess=dict(NUCLEUS_SETTINGS),
        classes=("nucleus", "micronucleus"),
        class_objects={"micronucleus": "Micronuclei"},
        **extra,
    )


def disc(centre, radius):
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def field_maps():
    """Two nuclei, and three micronuclei: one touching nucleus 1, one near it, one near 2.

    Returns the maps (foreground, centre, P(nucleus), P(micronucleus)) and the true objects.
    """
    nuclei = np.zeros(SHAPE, np.int32)
    nuclei[disc((16, 16), 8)] = 1
    nuclei[disc((44, 44), 8)] = 2
    micronuclei = np.zeros(SHAPE, np.int32)
    micronuclei[15:17, 25:27] = 1  # touches nucleus 1 (its edge is at column 24)
    micronuclei[30:32, 10:12] = 2  # 6 px below nucleus 1
    micronuclei[43:46, 30:33] = 3  # 3x3, left of nucleus 2
    maps = np.zeros((4, *SHAPE), np.float32)
    maps[0] = (nuclei > 0) | (micronuclei > 0)
    for labels in (nuclei, micronuclei):
        for number in range(1, labels.max() + 1):
            ys, xs = np.nonzero(labels == number)
            distance = np.hypot(ys - ys.mean(), xs - xs.mean())
            maps[1][ys, xs] = 1 - distance / (distance.max() + 1)
    maps[3] = micronuclei > 0
    maps[2] = 1 - maps[3]
    return maps, nuclei, micronuclei


def test_micronuclei_are_decoded_as_their_own_objects_and_never_merged_into_nuclei():
    maps, nuclei, micronuclei = field_maps()
    decoded = decode_objects(maps, None, class_info())
    assert list(decoded.labels) == ["Nuclei", "Micronuclei"]
    assert decoded.labels["Nuclei"].max() == 2
    np.testing.assert_array_equal(decoded.labels["Nuclei"] > 0, nuclei > 0)
    # 4-pixel micronuclei survive although nuclei under 16 pixels are dropped
    assert decoded.labels["Micronuclei"].max() == 3
    np.testing.assert_array_equal(decoded.labels["Micronuclei"] > 0, micronuclei > 0)


def test_each_micronucleus_gets_the_nearest_nucleus_as_parent():
    maps, _, micronuclei = field_maps()
    decoded = decode_objects(maps, None, class_info())
    labels = decoded.labels
    numbers = decoded.parents[("Micronuclei", "Nuclei")]
    near = {1: (16, 16), 2: (16, 16), 3: (44, 44)}  # true micronucleus -> its nucleus' centre
    for child, parent in enumerate(numbers, start=1):
        true_number = int(micronuclei[labels["Micronuclei"] == child][0])
        assert labels["Nuclei"][near[true_number]] == parent


def test_every_object_has_its_area_weighted_class_probabilities_and_most_probable_class():
    maps, nuclei, _ = field_maps()
    inside = np.flatnonzero((nuclei == 1).ravel())
    half = inside[: inside.size // 4]
    maps[2].ravel()[half], maps[3].ravel()[half] = 0.6, 0.4  # a quarter of nucleus 1 unsure
    decoded = decode_objects(maps, None, class_info(), {"Nuclei": {"min_score": 0}})
    names, probabilities = decoded.classes["Nuclei"]
    number = decoded.labels["Nuclei"][16, 16]
    expected = 1 - 0.4 * half.size / inside.size
    assert probabilities[number - 1, 0] == pytest.approx(expected, abs=1e-6)
    assert names == ["nucleus", "nucleus"]
    assert decoded.classes["Micronuclei"][0] == ["micronucleus"] * 3


def test_an_unsure_class_head_moves_pixels_between_sets_but_never_lowers_a_nucleus_score():
    # A half-trained head: nuclei pixels 70% nucleus, micronuclei pixels 60% micronucleus.
    # Each set's foreground is the foreground probability on the pixels its classes win, so
    # the shipped min_score of 0.9 still keeps every nucleus.
    maps, nuclei, micronuclei = field_maps()
    maps[2] = np.where(micronuclei > 0, 0.4, 0.7)
    maps[3] = 1 - maps[2]
    info = class_info()
    np.testing.assert_array_equal(object_foreground(maps, info), maps[0] * (micronuclei == 0))
    np.testing.assert_array_equal(
        object_foreground(maps, info, "Micronuclei"), maps[0] * (micronuclei > 0)
    )
    decoded = decode_objects(maps, None, info)
    assert NUCLEUS_SETTINGS["min_score"] == 0.9
    np.testing.assert_array_equal(decoded.labels["Nuclei"] > 0, nuclei > 0)
    np.testing.assert_array_equal(decoded.labels["Micronuclei"] > 0, micronuclei > 0)


def test_a_model_without_classes_has_one_object_set_decoded_from_the_foreground():
    maps, nuclei, _ = field_maps()
    info = ModelInfo(postprocess=dict(NUCLEUS_SETTINGS))
    np.testing.assert_array_equal(object_foreground(maps[:2], info), maps[0])
    decoded = decode_objects(maps[:2], None, info)
    assert list(decoded.labels) == ["Nuclei"] and decoded.parents == {}


def test_the_model_decodes_micronuclei_with_its_own_settings():
    maps, _, _ = field_maps()
    info = class_info(object_postprocess={"Micronuclei": {"min_size": 6}})
    assert decode_objects(maps, None, info).labels["Micronuclei"].max() == 1  # the 3x3 one


def test_boundary_and_centroid_parents_differ_for_a_micronucleus_by_a_large_nucleus():
    parents = np.zeros((40, 60), np.int32)
    parents[disc((20, 12), 10)[:40, :60]] = 1  # a large nucleus, its edge at column 22
    parents[18:23, 40:45] = 2  # a small one, its centre at column 42
    children = np.zeros((40, 60), np.int32)
    children[20, 30] = 1  # 8 px from the large one's edge, 18 from its centre; 10 and 12
    assert nearest_parents(children, parents).tolist() == [1]
    assert nearest_centre_parents(children, parents).tolist() == [2]
    assert nearest_parents(children, parents, max_distance=5).tolist() == [0]


def test_a_micronucleus_touching_two_nuclei_goes_to_the_one_most_of_it_lies_against():
    parents = np.zeros((20, 30), np.int32)
    parents[:, :10] = 1  # a nucleus on the left
    parents[12:, 10:] = 2  # one below, along the micronucleus' whole length
    children = np.zeros((20, 30), np.int32)
    children[10:12, 10:20] = 1  # touches nucleus 1 with its end, lies along nucleus 2
    children[3, 25] = 2  # far from both: 15 px from nucleus 1, 9 px from nucleus 2
    assert pixel_vote_parents(children, parents).tolist() == [2, 2]
    assert pixel_vote_parents(children, parents, max_distance=5).tolist() == [2, 0]
    assert nearest_parents(children, parents).tolist() == [1, 2]  # its first touching pixel's


def test_every_parent_rule_gives_no_parent_without_nuclei_or_micronuclei():
    empty = np.zeros((8, 8), np.int32)
    one = empty.copy()
    one[2, 2] = 1
    for rule in PARENT_RULES.values():
        assert rule(one, empty).tolist() == [0]
        assert rule(empty, one).tolist() == []


def spot_inside_a_nucleus(maps, nuclei):
    """Nucleus 2 with a 2x2 bright spot inside its edge that the class head calls
    micronucleus: three quarters of the spot's ring is nucleus (its right side is outside)."""
    spot = np.zeros(SHAPE, bool)
    spot[43:45, 50:52] = True  # nucleus 2 reaches column 52 on these rows
    maps[3] = np.where(spot, 1.0, maps[3])
    maps[2] = 1 - maps[3]
    return spot


def test_ring_share_counts_each_outer_ring_pixel_once_and_other_children_as_outside():
    primary = np.zeros((5, 7), np.int32)
    primary[:, :3] = 1
    children = np.zeros((5, 7), np.int32)
    children[2, 3:5] = 1  # ring: (2,2) nucleus; (2,5); (1,3) (1,4) (3,3) (3,4)
    children[2, 5] = 2  # touches child 1: its pixel is in 1's ring but not nucleus
    assert ring_share(children, primary).tolist() == [1 / 6, 0.0]
    edge = np.zeros((3, 3), np.int32)
    edge[0, 0] = 1  # in the corner: its ring is the two pixels inside the image
    assert ring_share(edge, np.ones((3, 3), np.int32)).tolist() == [1.0]


def test_a_micronucleus_mostly_ringed_by_nucleus_is_dropped_with_max_nucleus_ring():
    maps, nuclei, micronuclei = field_maps()
    spot = spot_inside_a_nucleus(maps, nuclei)
    kept = decode_objects(maps, None, class_info())
    assert kept.labels["Micronuclei"].max() == 4 and kept.labels["Micronuclei"][spot].all()
    info = class_info(object_postprocess={"Micronuclei": {"max_nucleus_ring": 0.5}})
    decoded = decode_objects(maps, None, info)
    labels = decoded.labels["Micronuclei"]
    # the three true ones stay (the touching one's ring is 1/8 nucleus), numbered 1..3
    assert sorted(np.unique(labels[labels > 0])) == [1, 2, 3]
    np.testing.assert_array_equal(labels > 0, micronuclei > 0)
    assert len(decoded.parents[("Micronuclei", "Nuclei")]) == 3
    assert len(decoded.classes["Micronuclei"][0]) == 3
    loose = class_info(object_postprocess={"Micronuclei": {"max_nucleus_ring": 0.8}})
    assert decode_objects(maps, None, loose).labels["Micronuclei"].max() == 4


def test_drop_enclosed_keeps_the_order_of_the_objects_it_keeps():
    primary = np.zeros((3, 9), np.int32)
    primary[:, 3:6] = 1
    children = np.zeros((3, 9), np.int32)
    children[1, 0], children[1, 4], children[1, 8] = 1, 2, 3  # 2 sits inside the nucleus
    np.testing.assert_array_equal(
        drop_enclosed(children, primary, 0.5)[1], [1, 0, 0, 0, 0, 0, 0, 0, 2]
    )


def test_object_class_probabilities_leave_missing_numbers_at_zero():
    labels = np.array([[0, 2, 2]])
    rows = object_class_probabilities(labels, np.array([[[0, 1.0, 0.5]], [[0, 0.0, 0.5]]]))
    np.testing.assert_allclose(rows, [[0, 0], [0.75, 0.25]])


class MapsRuntime:
    """Returns fixed maps, whatever it is given (a stand-in for the network)."""

    def __init__(self, maps):
        self.maps = maps

    def predict(self, field):
        return self.maps


class ClassModel:
    """What the recipe reads of a model with a micronucleus class (no network)."""

    def __init__(self):
        self.info = class_info()

    def prepare(self, image, channel=None, channel_names=None):
        return np.asarray(image, np.float32)[None]

    def labels_from_maps(self, maps, image=None, **settings):  # pragma: no cover - not called
        raise AssertionError("a model with classes is decoded by decode_objects")


def test_the_field_recipe_returns_micronuclei_and_their_parents():
    maps, nuclei, micronuclei = field_maps()
    image = (maps[0] * 1000).astype(np.uint16)
    pipeline = FieldPipeline(
        FieldSettings(diameter="native"), ClassModel(), runtime=MapsRuntime(maps)
    )
    result = pipeline.run(image, features="minimal")
    assert sorted(result.objects) == ["Micronuclei", "Nuclei"]
    parents = result.parents[("Micronuclei", "Nuclei")]
    assert len(parents) == 3 and set(parents.tolist()) == {1, 2}
    assert result.features["Nuclei_Children_Micronuclei_Count"].sum() == 3


def test_cells_keep_the_micronuclei_and_renumber_their_parents():
    maps, _, _ = field_maps()
    image = (maps[0] * 1000).astype(np.uint16)
    stain = np.zeros(SHAPE, np.uint16)
    stain[4:30, 4:30] = 200  # nucleus 1's cell stays inside; nucleus 2's reaches the border
    stain[30:, 30:] = 200
    settings = FieldSettings(
        diameter="native",
        channel="C0",
        cells={"channel": "C1", "method": "distance", "discard_border": True},
    )
    before = FieldPipeline(FieldSettings(diameter="native"), ClassModel(), MapsRuntime(maps))
    alone = before.run(image)
    pipeline = FieldPipeline(settings, ClassModel(), runtime=MapsRuntime(maps))
    result = pipeline.run(np.stack([image, stain]))
    assert "Micronuclei" in result.objects
    kept = result.objects["Nuclei"]
    assert 0 < kept.max() < alone.labels.max()  # a nucleus was dropped with its cell
    old_parents = alone.parents[("Micronuclei", "Nuclei")]
    new_parents = result.parents[("Micronuclei", "Nuclei")]
    for old, new in zip(old_parents, new_parents):
        where = alone.labels == old
        assert new == kept[where].max()  # the same nucleus by its new number, 0 if dropped
    names, probabilities = result.classes["Nuclei"]
    assert len(names) == len(probabilities) == kept.max()  # the kept nuclei's classes


def test_the_micronuclei_table_has_their_measurements_and_parent_column():
    maps, _, _ = field_maps()
    image = (maps[0] * 1000).astype(np.uint16)
    pipeline = FieldPipeline(
        FieldSettings(diameter="native"), ClassModel(), runtime=MapsRuntime(maps)
    )
    result = pipeline.run(image)
    planes = {"DNA": image}
    table = own_tables(result, planes, "minimal")["Micronuclei"]
    assert len(table) == 3 and "Micronuclei_AreaShape_Area" in table
    assert table["Micronuclei_Parent_Nuclei"].tolist() == list(
        result.parents[("Micronuclei", "Nuclei")]
    )
    rows = cell_profiles(result, planes, "minimal")
    assert rows["Nuclei_Children_Micronuclei_Count"].tolist() == [2, 1]


def test_every_row_has_its_objects_class_and_class_probabilities():
    maps, _, _ = field_maps()
    image = (maps[0] * 1000).astype(np.uint16)
    pipeline = FieldPipeline(
        FieldSettings(diameter="native"), ClassModel(), runtime=MapsRuntime(maps)
    )
    result = pipeline.run(image, features="minimal")
    assert result.features["Metadata_Nuclei_Class"].tolist() == ["nucleus", "nucleus"]
    np.testing.assert_allclose(result.features["Nuclei_ClassProbability_nucleus"], 1.0)
    table = own_tables(result, {"DNA": image}, "minimal")["Micronuclei"]
    assert table["Metadata_Micronuclei_Class"].tolist() == ["micronucleus"] * 3
    np.testing.assert_allclose(table["Micronuclei_ClassProbability_nucleus"], 0.0)


def test_matching_below_iou_one_half_is_one_to_one():
    truth = np.array([[1, 1, 1, 0, 2, 2, 2]])
    pred = np.array([[0, 5, 5, 5, 5, 0, 0]])  # IoU 2/5 with 1, 1/6 with 2
    true_ids, pred_ids, iou = matched_pairs(truth, pred, 0.3)
    assert true_ids.tolist() == [1] and pred_ids.tolist() == [5] and iou[0] == 0.4


def test_parents_come_from_the_most_common_id_under_each_micronucleus():
    micronuclei = np.array([[1, 1, 1, 0, 2]])
    parent_map = np.array([[4, 4, 3, 0, 0]])
    assert parents_from_map(micronuclei, parent_map).tolist() == [4, 0]


def test_micronucleus_scores_count_detections_parents_and_counts_per_nucleus():
    _, nuclei, micronuclei = field_maps()
    true_parents = np.array([1, 1, 2])
    predicted = micronuclei.copy()
    predicted[predicted == 2] = 0  # one missed
    predicted[2:4, 40:42] = 4  # one spurious, far from both
    predicted_parents = np.array([1, 0, 1, 2])  # micronucleus 3 given the wrong nucleus
    scores = MicronucleusScores()
    scores.add(nuclei, micronuclei, true_parents, nuclei, predicted, predicted_parents)
    out = scores.summary()
    assert (out["precision@0.3"], out["recall@0.3"]) == (2 / 3, 2 / 3)
    assert out["parent_accuracy"] == 1 / 2 and out["parents_scored"] == 2
    # true counts (2, 1), predicted (2, 1) by the given parents: 1->{1, 3}... nucleus 2 has 4
    assert out["nuclei_matched"] == 2
    assert out["count_agreement"] == 1.0


def test_evaluate_scores_micronuclei_with_their_parents(tmp_path):
    _, nuclei, micronuclei = field_maps()
    parent_map = np.where(micronuclei > 0, np.array([0, 1, 1, 2])[micronuclei], 0)
    for folder, array in (
        ("truth", nuclei),
        ("micronuclei", micronuclei),
        ("parents", parent_map),
        ("pred", nuclei),
    ):
        (tmp_path / folder).mkdir()
        name = "a_labels.tif" if folder == "pred" else "a.tif"
        tifffile.imwrite(tmp_path / folder / name, array.astype(np.uint16))
    tifffile.imwrite(tmp_path / "pred" / "a_micronuclei_labels.tif", micronuclei.astype(np.uint16))
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--pred",
            str(tmp_path / "pred"),
            "--truth",
            str(tmp_path / "truth"),
            "--micronuclei-truth",
            str(tmp_path / "micronuclei"),
            "--parents",
            str(tmp_path / "parents"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = dict(line.split() for line in result.output.strip().splitlines())
    assert float(lines["micronuclei_f1@0.3"]) == 1.0
    assert float(lines["micronuclei_parent_accuracy"]) == 1.0
    assert float(lines["micronuclei_count_agreement"]) == 1.0


def test_evaluate_asks_for_parents_with_the_micronuclei_truth(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--pred",
            str(tmp_path),
            "--truth",
            str(tmp_path),
            "--micronuclei-truth",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0 and "--parents" in result.output


def test_tuning_chooses_a_micronuclei_decoding_that_finds_them_all():
    from cellseg_hcs.training.micronuclei import MicronucleusTruth, tune_micronuclei

    maps, nuclei, micronuclei = field_maps()
    maps[3] = np.where(micronuclei > 0, 0.45, maps[3])  # unsure: the nucleus class wins there
    maps[2] = 1 - maps[3]
    truth = MicronucleusTruth(maps[0], nuclei, micronuclei, np.array([1, 1, 2]))
    model = ClassModel()
    tuned = tune_micronuclei(model, [truth], [maps], [nuclei])
    assert tuned["scores"]["f1@0.3"] == 1.0 and tuned["scores"]["parent_accuracy"] == 1.0
    assert tuned["settings"]["class_threshold"] < 0.45
    assert tuned["settings"]["parent_rule"] == "boundary"


def test_choosing_one_image_at_a_time_pools_the_scores_of_each_decoding():
    """The tuner's pooled scores of a decoding are those of scoring its objects directly."""
    maps, nuclei, micronuclei = field_maps()
    dim = maps.copy()
    dim[3] = np.where(micronuclei == 3, 0.35, dim[3])  # one micronucleus found only at 0.3
    dim[2] = 1 - dim[3]
    truth = MicronucleusTruth(maps[0], nuclei, micronuclei, np.array([1, 1, 2]))
    model = ClassModel()
    grid = {"class_threshold": (0.3, 0.5), "min_size": (2, 6)}
    tuner = MicronucleiTuner(model, grid=grid)
    for image_maps in (maps, dim):
        tuner.add(truth, image_maps, nuclei)
    for choice, by_rule in tuner.scores.items():
        expected = MicronucleusScores()
        for image_maps in (maps, dim):
            labels = decode_objects(
                image_maps, None, ClassModel().info, {"Micronuclei": dict(choice)}
            ).labels["Micronuclei"]
            parents = PARENT_RULES["centroid"](labels, nuclei)
            expected.add(nuclei, micronuclei, truth.parents, nuclei, labels, parents)
        assert by_rule["centroid"].summary() == expected.summary(), choice
    low = tuner.scores[(("class_threshold", 0.3), ("min_size", 2))]["boundary"].summary()
    high = tuner.scores[(("class_threshold", 0.5), ("min_size", 2))]["boundary"].summary()
    assert low["recall@0.3"] == 1.0 and high["recall@0.3"] == 5 / 6
    assert tuner.choose()["settings"]["class_threshold"] == 0.3


def test_the_tuner_drops_spots_inside_nuclei_when_that_raises_the_f1():
    maps, nuclei, micronuclei = field_maps()
    spot_inside_a_nucleus(maps, nuclei)
    truth = MicronucleusTruth(maps[0], nuclei, micronuclei, np.array([1, 1, 2]))
    found_nuclei = decode_objects(maps, None, ClassModel().info).labels["Nuclei"]  # spot carved
    grid = {"class_threshold": (0.5,), "max_nucleus_ring": (None, 0.5)}
    tuner = MicronucleiTuner(ClassModel(), grid=grid)
    tuner.add(truth, maps, found_nuclei)
    kept = tuner.scores[(("class_threshold", 0.5), ("max_nucleus_ring", None))]["boundary"]
    assert kept.summary()["precision@0.3"] == 3 / 4
    chosen = tuner.choose()
    assert chosen["settings"]["max_nucleus_ring"] == 0.5
    assert chosen["scores"]["f1@0.3"] == 1.0
