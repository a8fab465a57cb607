"""A learned score for micronuclei: features of each candidate, the regression, the cut."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_micronuclei import class_info, field_maps, spot_inside_a_nucleus

from cellseg_hcs.errors import SettingError
from cellseg_hcs.field.micronuclei import decode_objects
from cellseg_hcs.field.object_score import FEATURES, ObjectScore, object_features
from cellseg_hcs.model.model import Model


def score_dict(features, weights, intercept=0.0, cut=0.5):
    return {
        "features": list(features),
        "mean": [0.0] * len(features),
        "scale": [1.0] * len(features),
        "weights": list(weights),
        "intercept": intercept,
        "cut": cut,
    }


def prepared_image(nuclei, micronuclei):
    """A prepared input: background 0, nuclei 0.5, micronuclei 1."""
    return np.where(micronuclei > 0, 1.0, np.where(nuclei > 0, 0.5, 0.0)).astype(np.float32)


def test_each_feature_measures_what_its_name_says_on_a_drawn_field():
    maps, nuclei, micronuclei = field_maps()
    image = prepared_image(nuclei, micronuclei)
    features = object_features(
        micronuclei, nuclei, maps, image[None], class_info(), "Micronuclei", tuple(FEATURES)
    )
    row = dict(zip(FEATURES, features.T))
    assert features.shape == (3, len(FEATURES))
    np.testing.assert_allclose(row["log_area"], np.log([4, 4, 9]))
    np.testing.assert_allclose(row["class_mean"], 1.0)  # P(micronucleus) is 1 on them
    np.testing.assert_allclose(row["class_max"], 1.0)
    np.testing.assert_allclose(row["fg_mean"], 1.0)
    for number in (1, 2, 3):  # the centre map: highest in the middle of each
        centre = maps[1][micronuclei == number]
        assert row["centre_mean"][number - 1] == pytest.approx(centre.mean())
        assert row["centre_max"][number - 1] == pytest.approx(centre.max())
    # micronucleus 1 touches nucleus 1: boundary distance 1 px; 2 is 6 px below it
    assert row["distance"][0] == pytest.approx(math.log1p(1.0))
    assert row["distance"][1] > row["distance"][0]
    np.testing.assert_allclose(row["nucleus_area"], np.log((nuclei == 1).sum()))  # both discs alike
    # brighter than the nucleus by 0.5; its ring is background except where it touches
    np.testing.assert_allclose(row["contrast_nucleus"], 0.5)
    assert row["contrast_ring"][1] == pytest.approx(1.0)
    assert 0.5 < row["contrast_ring"][0] < 1.0
    assert row["ring"][0] > 0 and row["ring"][1] == 0


def test_two_candidates_side_by_side_each_get_their_own_surroundings():
    # a bright column between two equal spots: each spot's ring holds that column's pixels
    image = np.zeros((7, 9), np.float32)
    image[:, 4] = 1.0
    children = np.zeros((7, 9), np.int32)
    children[2:5, 2:4] = 1
    children[2:5, 5:7] = 2
    maps = np.ones((4, 7, 9), np.float32)
    features = object_features(
        children,
        np.zeros_like(children),
        maps,
        image,
        class_info(),
        "Micronuclei",
        ["contrast_ring"],
    )
    assert features[0, 0] == pytest.approx(features[1, 0])
    assert features[0, 0] < 0  # darker than the bright column beside it
    # a candidate wholly surrounded by another has no ring of its own: contrast 0, not NaN
    inner = np.zeros((5, 5), np.int32)
    inner[1:4, 1:4] = 1
    inner[2, 2] = 2
    surrounded = object_features(
        inner,
        np.zeros_like(inner),
        np.ones((4, 5, 5)),
        np.ones((5, 5)),
        class_info(),
        "Micronuclei",
        list(FEATURES),
    )
    assert (
        np.isfinite(surrounded).all() and surrounded[1, list(FEATURES).index("contrast_ring")] == 0
    )


def test_no_candidates_and_numbers_with_no_pixels_give_finite_features():
    maps, nuclei, micronuclei = field_maps()
    image = prepared_image(nuclei, micronuclei)
    info = class_info()
    empty = np.zeros_like(micronuclei)
    assert object_features(empty, nuclei, maps, image, info, "Micronuclei", FEATURES).shape == (
        0,
        len(FEATURES),
    )
    score = ObjectScore.from_dict(score_dict(["log_area"], [1.0]))
    assert score.keep(empty, nuclei, maps, image, info, "Micronuclei").max() == 0
    gapped = np.where(micronuclei == 2, 0, micronuclei)  # numbers 1 and 3
    features = object_features(gapped, nuclei, maps, image, info, "Micronuclei", FEATURES)
    assert features.shape == (3, len(FEATURES)) and np.isfinite(features).all()


def test_a_score_drops_the_candidates_under_its_cut_and_renumbers_the_rest():
    maps, nuclei, micronuclei = field_maps()
    image = prepared_image(nuclei, micronuclei)
    # log_area: log 4 for two micronuclei, log 9 for the third; the cut keeps the large one
    score = score_dict(["log_area"], [4.0], intercept=-4.0 * math.log(6), cut=0.5)
    info = class_info(object_postprocess={"Micronuclei": {"score": score}})
    decoded = decode_objects(maps, image, info)
    labels = decoded.labels["Micronuclei"]
    assert labels.max() == 1
    np.testing.assert_array_equal(labels > 0, micronuclei == 3)
    assert len(decoded.parents[("Micronuclei", "Nuclei")]) == 1
    assert decoded.parents[("Micronuclei", "Nuclei")][0] == decoded.labels["Nuclei"][44, 44]


def test_a_score_on_the_ring_drops_a_bright_spot_inside_a_nucleus():
    maps, nuclei, micronuclei = field_maps()
    spot_inside_a_nucleus(maps, nuclei)
    image = prepared_image(nuclei, micronuclei)
    score = score_dict(["ring"], [-10.0], intercept=5.0, cut=0.5)  # ring share > 0.5: out
    info = class_info(object_postprocess={"Micronuclei": {"score": score}})
    labels = decode_objects(maps, image, info).labels["Micronuclei"]
    np.testing.assert_array_equal(labels > 0, micronuclei > 0)


def test_a_score_that_trusts_every_candidate_changes_nothing():
    maps, nuclei, micronuclei = field_maps()
    image = prepared_image(nuclei, micronuclei)
    plain = decode_objects(maps, image, class_info())
    score = score_dict(list(FEATURES), [0.0] * len(FEATURES), intercept=1.0, cut=0.5)
    info = class_info(object_postprocess={"Micronuclei": {"score": score}})
    scored = decode_objects(maps, image, info)
    np.testing.assert_array_equal(plain.labels["Micronuclei"], scored.labels["Micronuclei"])


def test_the_probability_is_the_logistic_of_the_standardised_features():
    score = ObjectScore.from_dict(
        {
            "features": ["log_area", "ring"],
            "mean": [1.0, 0.5],
            "scale": [2.0, 0.25],
            "weights": [1.0, -2.0],
            "intercept": 0.5,
            "cut": 0.5,
        }
    )
    x = np.array([[3.0, 0.75]])  # standardised: 1, 1 -> 1 - 2 + 0.5 = -0.5
    assert score.probability(x)[0] == pytest.approx(1 / (1 + math.exp(0.5)))
    assert ObjectScore.from_dict(score.to_dict()) == score


@pytest.mark.parametrize(
    "change, words",
    [
        ({"features": ["log_area", "colour"]}, "unknown object score feature"),
        ({"weights": [1.0]}, "differ in length"),
        ({"scale": [1.0, 0.0]}, "above 0"),
        ({"cut": None}, "needs features"),
    ],
)
def test_a_malformed_score_is_refused_in_one_sentence(change, words):
    raw = {**score_dict(["log_area", "ring"], [1.0, 1.0]), **change}
    with pytest.raises(SettingError, match=words):
        ObjectScore.from_dict(raw)


def test_a_score_needs_the_image_for_its_intensity_features():
    maps, _, _ = field_maps()
    score = score_dict(["contrast_ring"], [1.0])
    info = class_info(object_postprocess={"Micronuclei": {"score": score}})
    with pytest.raises(SettingError, match="reads the image"):
        decode_objects(maps, None, info)


def test_a_model_file_carries_its_score(tmp_path):
    maps, nuclei, micronuclei = field_maps()
    image = prepared_image(nuclei, micronuclei)
    score = score_dict(["log_area"], [4.0], intercept=-4.0 * math.log(6), cut=0.5)
    info = class_info(object_postprocess={"Micronuclei": {"score": score}})
    from cellseg_hcs.model.unet import UNet

    network = UNet(**info.network)
    path = Model(network, info).save(tmp_path / "scored.safetensors")
    loaded = Model.load(path)
    assert loaded.info.object_postprocess["Micronuclei"]["score"] == score
    labels = decode_objects(maps, image, loaded.info).labels["Micronuclei"]
    np.testing.assert_array_equal(labels > 0, micronuclei == 3)


def scored_images(count=10, seed=0):
    """Fields of four 2x2 candidates each; a candidate is a true micronucleus when its first
    feature is high (plus noise), the other features are noise."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        children = np.zeros((12, 12), np.int32)
        for number, (y, x) in enumerate([(1, 1), (1, 7), (7, 1), (7, 7)], start=1):
            children[y : y + 2, x : x + 2] = number
        label = rng.random(4) < 0.5
        features = rng.normal(size=(4, len(FEATURES)))
        features[:, 0] += 3 * label
        numbers = np.r_[0, np.where(label, np.cumsum(label), 0)]
        truth = SimpleNamespace(
            name=f"training__{index:02d}",
            nuclei=np.zeros((12, 12), np.int32),
            micronuclei=numbers[children].astype(np.int32),
            parents=np.zeros(int(label.sum()), np.int64),
        )
        parents = {name: np.zeros(4, np.int64) for name in ("boundary", "vote", "centroid")}
        images.append(
            {
                "truth": truth,
                "nuclei": truth.nuclei,
                "children": children,
                "parents": parents,
                "features": features,
                "label": label,
            }
        )
    return images


def test_the_exported_score_computes_what_the_fitted_regression_computed():
    from conftest import load_benchmark

    bench = load_benchmark("micronuclei_score")
    images = scored_images()
    regression = bench.fit(images, C=1.0)
    score = bench.as_score(regression, 0.5)
    features = np.concatenate([image["features"] for image in images])
    np.testing.assert_allclose(
        score.probability(features), regression.predict_proba(features)[:, 1], rtol=1e-9
    )
    assert ObjectScore.from_dict(score.to_dict()) == score


def test_out_of_fold_scores_never_see_their_own_image_and_find_the_true_candidates():
    from conftest import load_benchmark

    bench = load_benchmark("micronuclei_score")
    images = scored_images(count=15)
    fitted_on, scored = [], []
    fit, probabilities = bench.fit, bench.probabilities

    def recording_fit(members, C):
        regression = fit(members, C)
        regression.names = {image["truth"].name for image in members}
        return regression

    def recording_probabilities(regression, members):
        fitted_on.append(regression.names)
        scored.append({image["truth"].name for image in members})
        return probabilities(regression, members)

    bench.fit, bench.probabilities = recording_fit, recording_probabilities
    try:
        keep, probability, cuts = bench.out_of_fold(images, C=1.0)
    finally:
        bench.fit, bench.probabilities = fit, probabilities
    assert len(cuts) == bench.FOLDS
    assert sorted(keep) == sorted(image["truth"].name for image in images)
    # 5 outer fits and 4 inner ones each: no image is ever scored by a fit that saw it
    assert len(fitted_on) == bench.FOLDS * (1 + bench.FOLDS - 1)
    assert all(not (fit_names & scored_names) for fit_names, scored_names in zip(fitted_on, scored))
    summary = bench.scores(images, keep)
    everything = {name: np.ones(4, bool) for name in keep}
    kept_all = bench.scores(images, everything)["f1@0.3"]  # about 2/3: half are false
    assert summary["f1@0.3"] > 0.8 and summary["f1@0.3"] > kept_all + 0.1


def test_per_candidate_means_and_maxima_equal_scipys_on_random_objects():
    from scipy import ndimage as ndi

    from cellseg_hcs.field.object_score import ObjectContext

    rng = np.random.default_rng(1)
    children, count = ndi.label(rng.random((40, 50)) > 0.7)
    values = rng.random((40, 50))
    context = ObjectContext(children, np.zeros_like(children), values[None], None, values)
    ids = np.arange(1, count + 1)
    np.testing.assert_allclose(context.mean(values), ndi.mean(values, children, ids))
    np.testing.assert_array_equal(context.maximum(values), ndi.maximum(values, children, ids))
    np.testing.assert_array_equal(context.area, ndi.sum_labels(np.ones_like(values), children, ids))


def test_the_shipped_micronuclei_model_carries_a_score_of_every_feature():
    from cellseg_hcs.model.model import load_model

    settings = load_model("micronuclei").info.object_postprocess["Micronuclei"]
    score = ObjectScore.from_dict(settings["score"])
    assert score.features == tuple(FEATURES)
    assert 0 < score.cut < 1


def test_a_model_file_with_a_malformed_score_is_refused_when_read(tmp_path):
    from cellseg_hcs.errors import ModelError
    from cellseg_hcs.model.unet import UNet

    score = {**score_dict(["log_area"], [1.0]), "scale": [0.0]}
    info = class_info(object_postprocess={"Micronuclei": {"score": score}})
    path = Model(UNet(**info.network), info).save(tmp_path / "bad.safetensors")
    with pytest.raises(ModelError, match="bad.safetensors.*Micronuclei.*above 0"):
        Model.load(path)


def test_every_parent_rule_gives_the_same_parents_from_a_transform_made_once():
    from cellseg_hcs.field.relations import PARENT_RULES, distance_to

    maps, nuclei, micronuclei = field_maps()
    spot_inside_a_nucleus(maps, nuclei)
    transform = distance_to(nuclei)
    for name, rule in PARENT_RULES.items():
        np.testing.assert_array_equal(
            rule(micronuclei, nuclei, transform=transform), rule(micronuclei, nuclei), name
        )


def test_a_field_with_a_score_and_the_vote_rule_measures_its_distances_once(monkeypatch):
    import cellseg_hcs.field.micronuclei as decoding
    from cellseg_hcs.field.relations import distance_to

    made = []

    def counted(parents):
        made.append(1)
        return distance_to(parents)

    monkeypatch.setattr(decoding, "distance_to", counted)
    maps, nuclei, micronuclei = field_maps()
    image = prepared_image(nuclei, micronuclei)
    score = score_dict(["distance", "log_area"], [-1.0, 0.0], intercept=3.0)
    info = class_info(object_postprocess={"Micronuclei": {"score": score, "parent_rule": "vote"}})
    decoded = decode_objects(maps, image, info)
    assert made == [1]
    assert decoded.labels["Micronuclei"].max() == 3  # all near a nucleus: all kept
