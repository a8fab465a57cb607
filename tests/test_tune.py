"""Tuning post-processing on validation images: it finds the settings that fit the maps."""

from __future__ import annotations

import numpy as np

from cellseg_hcs.field.postprocess import PostprocessSettings, maps_to_labels
from cellseg_hcs.model.model import ModelInfo
from cellseg_hcs.training.data import Sample
from cellseg_hcs.training.tune import seed_choices, tune_postprocess

# Along one bar of foreground: two bright nuclei joined by a high pass (0.6), and a faint
# one (peak 0.4) beside them, as a network draws a dim nucleus touching bright ones.
POINTS_X = [0, 10, 20, 30, 40, 47, 54]
POINTS_Y = [0.05, 1.0, 0.6, 1.0, 0.05, 0.4, 0.05]


class MapsModel:
    """Stands in for a trained model whose network draws fixed maps."""

    def __init__(self, maps: np.ndarray) -> None:
        self.maps = maps
        self.runs = 0
        self.info = ModelInfo(postprocess={"min_size": 1})

    def predict_maps(self, image: np.ndarray) -> np.ndarray:
        self.runs += 1
        return self.maps

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return image[None].astype(np.float32)

    def labels_from_maps(
        self, maps: np.ndarray, image: np.ndarray | None = None, **settings
    ) -> np.ndarray:
        merged = {**self.info.postprocess, **settings}
        return maps_to_labels(maps[0], maps[1], PostprocessSettings(**merged), image=image)


def _three_nuclei_in_a_row() -> tuple[Sample, np.ndarray]:
    profile = np.interp(np.arange(55), POINTS_X, POINTS_Y)
    distance = np.zeros((9, 59))
    distance[2:7, 2:57] = profile
    foreground = (distance > 0).astype(float)
    truth = np.zeros(distance.shape, np.int32)
    truth[2:7, 2:22], truth[2:7, 22:42], truth[2:7, 42:57] = 1, 2, 3
    return Sample(foreground.astype(np.float32), truth, "row"), np.stack([foreground, distance])


def test_no_seed_threshold_finds_all_three_but_a_peak_height_does():
    sample, maps = _three_nuclei_in_a_row()
    for choice in seed_choices():
        labels = maps_to_labels(maps[0], maps[1], PostprocessSettings(min_size=1, **choice))
        assert (labels.max() == 3) == (
            choice["seeds"] == "peaks" and choice["peak_height"] <= 0.35
        ), choice


def test_tuning_picks_the_seeds_that_separate_the_nuclei_and_runs_the_network_once():
    sample, maps = _three_nuclei_in_a_row()
    model = MapsModel(maps)
    best = tune_postprocess(model, [sample], size_fraction=(0.0,))
    assert best["settings"]["seeds"] == "peaks"
    assert best["scores"]["f1"] == 1.0
    assert model.runs == 1


def test_tuning_without_peak_heights_stays_with_thresholds():
    sample, maps = _three_nuclei_in_a_row()
    best = tune_postprocess(MapsModel(maps), [sample], size_fraction=(0.0,), peak=())
    assert best["settings"]["seeds"] == "threshold"
    assert best["scores"]["f1"] < 1.0


def test_tuning_drops_doubtful_specks_by_score_not_the_small_sure_nuclei():
    sample, maps = _three_nuclei_in_a_row()
    foreground, distance = maps.copy()
    truth = sample.labels.copy()
    # Row 0 is apart from the row of nuclei (rows 2-6): two specks of the same size.
    foreground[0, 3:7], distance[0, 3:7] = 0.55, 0.3  # a doubtful speck, not a nucleus
    foreground[0, 40:44], distance[0, 40:44] = 1.0, 0.3  # a small nucleus, sure
    truth[0, 40:44] = 4
    best = tune_postprocess(
        MapsModel(np.stack([foreground, distance])),
        [Sample(foreground.astype(np.float32), truth, "row")],
    )
    assert best["scores"]["f1"] == 1.0
    assert best["settings"]["min_score"] > 0.55 and best["settings"]["min_size_fraction"] == 0


def test_the_matching_scores_tuning_uses_equal_the_full_metrics(mnfinder_dir):
    import tifffile
    from scipy import ndimage as ndi

    from cellseg_hcs.training.metrics import InstanceScores, match_instances

    full, matches = InstanceScores(), []
    for path in sorted((mnfinder_dir / "nuclei_labels").glob("*.tif"))[:2]:
        truth = tifffile.imread(path)
        pred = np.where(ndi.binary_erosion(truth > 0, iterations=2), truth, 0)  # shrunk
        pred[:40] = 0  # and some missed
        full.add(truth, pred)
        matches.append(match_instances(truth, pred))
    summary = full.summary()
    assert 0 < summary["ap"] < summary["f1"] < 1
    quick = InstanceScores(matches=matches).matching_summary()
    assert quick == {k: v for k, v in summary.items() if not k.startswith("coco")}


def test_tuning_merges_the_lobes_of_one_nucleus_when_they_are_alike():
    # The two bright peaks of the row are the lobes of one evenly bright nucleus here: the
    # lower rises 0.42 above their pass, the faint third nucleus only 0.3 above its own, so
    # no peak height alone splits the faint one off and keeps the lobes together.
    sample, maps = _three_nuclei_in_a_row()
    maps[1, 2:7, 2:57] = np.interp(
        np.arange(55), POINTS_X, [0.05, 1.0, 0.53, 0.95, 0.05, 0.35, 0.05]
    )
    truth = sample.labels.copy()
    truth[truth == 2] = 1
    image = np.where(truth == 3, 0.5, 1.0) * (truth > 0)
    row = [Sample(image.astype(np.float32), truth, "row")]
    without = tune_postprocess(
        MapsModel(maps), row, size_fraction=(0.0,), seed=(), merge=[{"merge_height": 0.0}]
    )
    best = tune_postprocess(MapsModel(maps), row, size_fraction=(0.0,), seed=())
    assert without["scores"]["f1"] < 1.0
    assert best["scores"]["f1"] == 1.0
    assert best["settings"]["merge_height"] == 0.5
