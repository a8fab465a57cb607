"""Micronuclei: the rules that keep their objects, parents and scores consistent.

A pixel is a nucleus pixel or a micronucleus pixel; ``parent_distance`` means the same for
every parent rule; the tuner scores the decodings the model will run; true nuclei keep the
ids their parent map names.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from test_micronuclei import SHAPE, ClassModel, class_info, disc, field_maps

from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.micronuclei import decode_objects
from cellseg_hcs.field.relations import PARENT_RULES, pair_distances, pixel_vote_parents
from cellseg_hcs.training.micronuclei import (
    MicronucleiFolders,
    MicronucleiTuner,
    MicronucleusScores,
    MicronucleusTruth,
    best_parent_rule,
    nuclei_ids,
)


def test_a_micronucleus_ringing_a_nucleus_never_takes_its_pixels():
    """Filling the holes of the micronucleus class's foreground must not fill a nucleus."""
    maps, nuclei, micronuclei = field_maps()
    rim = disc((16, 16), 10) & ~disc((16, 16), 8)  # micronucleus class all round nucleus 1
    maps[0][rim] = 1
    maps[1][rim] = 0.2
    maps[3][rim], maps[2][rim] = 1, 0
    decoded = decode_objects(maps, None, class_info())
    found_nuclei, found_micronuclei = decoded.labels["Nuclei"], decoded.labels["Micronuclei"]
    np.testing.assert_array_equal(found_nuclei > 0, nuclei > 0)
    assert not np.any((found_nuclei > 0) & (found_micronuclei > 0))
    assert np.all(found_micronuclei[rim] > 0)  # the rim itself is still micronucleus


def one_nucleus_and_a_child(gap: int):
    """Nucleus 1 (a disc of radius 8 at (32, 20)), nucleus 2 far right, and a 2x2 child
    ``gap`` pixels right of nucleus 1's edge (column 28): touching when gap is 1."""
    parents = np.zeros(SHAPE, np.int32)
    parents[disc((32, 20), 8)] = 1
    parents[disc((32, 58), 4)] = 2
    children = np.zeros(SHAPE, np.int32)
    children[31:33, 28 + gap : 30 + gap] = 1
    return children, parents


@pytest.mark.parametrize("rule", sorted(PARENT_RULES))
def test_parent_distance_is_from_the_child_to_its_parent_for_every_rule(rule):
    touching, parents = one_nucleus_and_a_child(gap=1)
    assert pair_distances(touching, parents, np.array([1]))[0] == 1.0  # pixel centres
    assert PARENT_RULES[rule](touching, parents, 1).tolist() == [1]
    assert PARENT_RULES[rule](touching, parents, 0.5).tolist() == [0]
    near, _ = one_nucleus_and_a_child(gap=4)  # 4 px from nucleus 1, 26 from the other
    assert PARENT_RULES[rule](near, parents, 5).tolist() == [1]
    assert PARENT_RULES[rule](near, parents, 3).tolist() == [0]


def test_with_a_limit_only_pixels_that_near_a_parent_vote():
    """A child lying along a nucleus 5 pixels away, one end 2 pixels from another: with a
    limit of 4, only that end votes, and the parent is never beyond the limit."""
    parents = np.zeros((12, 30), np.int32)
    parents[0, :] = 2  # a long nucleus along the child, 5 pixels from each of its pixels
    parents[5, 8] = 1  # a small one beside its left end: 2, 3 and 4 pixels from 3 of them
    children = np.zeros((12, 30), np.int32)
    children[5, 10:21] = 1
    assert pixel_vote_parents(children, parents).tolist() == [2]  # 8 votes against 3
    assert pixel_vote_parents(children, parents, 4).tolist() == [1]
    assert pixel_vote_parents(children, parents, 1).tolist() == [0]


def test_the_tuner_scores_every_rule_with_the_models_parent_distance():
    maps, nuclei, micronuclei = field_maps()
    info = class_info(object_postprocess={"Micronuclei": {"parent_distance": 2}})
    truth = MicronucleusTruth(maps[0], nuclei, micronuclei, np.array([1, 1, 2]))
    tuner = MicronucleiTuner(SimpleNamespace(info=info), grid={"min_size": (3,)})
    tuner.add(truth, maps, nuclei)
    chosen = tuner.choose()
    for rule, accuracy in chosen["parent_accuracy_by_rule"].items():
        expected = PARENT_RULES[rule](micronuclei, nuclei, 2)
        # the 6-pixel-away micronucleus has no parent within 2 pixels under any rule
        assert expected.tolist()[1] == 0
        assert accuracy == pytest.approx(np.mean(expected == truth.parents)), rule
    model_info = class_info(object_postprocess={"Micronuclei": {**chosen["settings"]}})
    model_info.object_postprocess["Micronuclei"]["parent_distance"] = 2
    decoded = decode_objects(maps, None, model_info)
    found, parents = decoded.labels["Micronuclei"], decoded.parents[("Micronuclei", "Nuclei")]
    # only the micronucleus touching nucleus 1 (1 pixel) has a parent within 2 pixels
    for true_number, parent in ((1, 1), (2, 0), (3, 0)):
        number = int(found[micronuclei == true_number].max())
        assert parents[number - 1] == parent, true_number


def test_the_tuner_tries_the_hole_filling_it_is_given():
    """A ring-shaped micronucleus is one object with its hole filled, none without (each
    piece under the size limit): the tuner's scores follow what the decoding would do."""
    maps, nuclei, _ = field_maps()
    ring = disc((32, 52), 2) & ~disc((32, 52), 1)
    micronuclei = ring.astype(np.int32)
    maps[0][ring] = 1
    maps[1][ring] = 0.5
    maps[3][ring], maps[2][ring] = 1, 0
    truth = MicronucleusTruth(maps[0], nuclei, micronuclei, np.array([2]))
    grid = {"fill_holes": (True, False), "min_size": (9,)}
    tuner = MicronucleiTuner(ClassModel(), grid=grid)
    tuner.add(truth, maps, nuclei)
    for fill in (True, False):
        recall = tuner.scores[(("fill_holes", fill), ("min_size", 9))]["boundary"]
        decoded = decode_objects(
            maps, None, class_info(), {"Micronuclei": {"fill_holes": fill, "min_size": 9}}
        )
        found = int(decoded.labels["Micronuclei"][ring].any())
        assert recall.summary()["recall@0.3"] == found
    assert tuner.choose()["settings"]["fill_holes"] is True


def test_the_tuner_refuses_settings_it_cannot_try():
    with pytest.raises(SettingError, match="does not try merge_height"):
        MicronucleiTuner(ClassModel(), grid={"merge_height": (0.0, 0.5)})


def test_a_decoding_with_no_parent_scored_never_wins_a_tie_over_one_with_parents():
    """Two decodings with the same F1: the first (in grid order) finds only a micronucleus
    whose parent nobody annotated (no parent scored), the second only one with a parent,
    given right. The second is chosen; so is a rule with parents over one without."""
    _, nuclei, micronuclei = field_maps()
    true_parents = np.array([1, 0, 2])  # micronucleus 2's parent is not annotated
    by_decoding = {}
    for min_size, found in ((2, 2), (3, 1)):  # each finds one of the three
        scores = MicronucleusScores()
        predicted = np.where(micronuclei == found, 1, 0)
        scores.add(nuclei, micronuclei, true_parents, nuclei, predicted, true_parents[[found - 1]])
        by_decoding[(("min_size", min_size),)] = dict.fromkeys(PARENT_RULES, scores)
    tuner = MicronucleiTuner(ClassModel(), grid={"min_size": (2, 3)})
    tuner.scores = by_decoding
    first = by_decoding[(("min_size", 2),)]["boundary"].summary()
    assert np.isnan(first["parent_accuracy"]) and first["f1@0.3"] == 0.5
    assert tuner.choose()["settings"]["min_size"] == 3
    assert best_parent_rule({"boundary": np.nan, "centroid": 0.9, "vote": np.nan}) == "centroid"


def test_true_nuclei_keep_the_ids_their_parent_map_names(tmp_path):
    """A field with one nucleus, id 5: not a binary mask to split and renumber."""
    image = np.zeros((32, 32), np.uint16)
    image[4:12, 4:12] = 500
    nuclei = np.zeros((32, 32), np.uint16)
    nuclei[4:12, 4:12] = 5
    micronuclei = np.zeros((32, 32), np.uint16)
    micronuclei[14:16, 6:8] = 1
    parent_map = np.where(micronuclei > 0, 5, 0).astype(np.uint16)
    for folder, array in (
        ("images", image),
        ("nuclei", nuclei),
        ("micronuclei", micronuclei),
        ("parents", parent_map),
    ):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "a.tif", array)
    truth = MicronucleiFolders(
        *(tmp_path / f for f in ("images", "nuclei", "micronuclei")), tmp_path / "parents"
    )[0]
    assert np.unique(truth.nuclei).tolist() == [0, 5] and truth.parents.tolist() == [5]
    binary = np.where(nuclei > 0, 255, 0)  # one value that no parent names: binary
    assert np.unique(nuclei_ids(binary, np.zeros_like(binary))).tolist() == [0, 1]
