"""Tiling invariants, swept over field sizes, tile sizes and overlaps.

The strongest one: for a network that only sees a small neighbourhood, maps stitched from
tiles equal whole-image maps to float precision, for every field shape (smaller than a
tile, non-multiples, very elongated), so labels made from them are identical.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cellseg_hcs.field.postprocess import PostprocessSettings, maps_to_labels
from cellseg_hcs.model.model import Model, ModelInfo
from cellseg_hcs.runtime import Runtime, TileGrid, tile_starts
from cellseg_hcs.runtime.tiling import taper, tile_side

LENGTHS = [1, 7, 16, 63, 64, 65, 100, 127, 128, 129, 255, 300, 517, 1000, 2160]
TILES = [16, 48, 64, 100, 128, 512]
OVERLAPS = [0, 4, 12, 20, 31]


@pytest.fixture(scope="module")
def tiny_stem2_model() -> Model:
    """A small random UNet with the real model's space-to-depth stem (plumbing, not accuracy)."""
    from cellseg_hcs.model.unet import UNet

    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "stem": 2}
    return Model(UNet(**options), ModelInfo(network=options))


@pytest.fixture(scope="module")
def mnfinder_image() -> np.ndarray:
    """A real 512x512 DNA-stain field from the mnfinder test split (tests/data)."""
    import tifffile

    images = Path(__file__).parent / "data" / "mnfinder" / "images"
    return tifffile.imread(sorted(images.glob("*MCC13*"))[0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _valid(tile: int, overlap: int) -> bool:
    return overlap < tile // 2


@pytest.mark.parametrize("tile,overlap", [(t, o) for t in TILES for o in OVERLAPS if _valid(t, o)])
def test_tiles_cover_every_pixel_and_neighbours_overlap_by_at_least_the_overlap(tile, overlap):
    for length in LENGTHS:
        side = tile_side(length, tile, overlap, multiple=8)
        starts = tile_starts(length, side, overlap)
        assert side <= max(tile, 1) or side == length
        assert starts[0] == 0 and starts[-1] + side == max(length, side)
        covered = np.zeros(length, dtype=bool)
        for start in starts:
            covered[start : start + side] = True
        assert covered.all()
        for before, after in itertools.pairwise(starts):
            assert before + side - after >= overlap


@pytest.mark.parametrize("tile,overlap", [(t, o) for t in TILES for o in OVERLAPS if _valid(t, o)])
def test_shrunk_tiles_never_need_more_tiles_than_the_asked_tile_size(tile, overlap):
    for length in LENGTHS:
        side = tile_side(length, tile, overlap, multiple=16)
        assert len(tile_starts(length, side, overlap)) <= len(tile_starts(length, tile, overlap))


@pytest.mark.parametrize("overlap", [1, 2, 3, 4, 8, 13, 64])
def test_taper_windows_of_neighbouring_tiles_sum_to_one_over_an_exact_overlap(overlap):
    size = 3 * overlap + 5
    rising = taper(size, overlap, at_start=False, at_end=True)[:overlap]
    falling = taper(size, overlap, at_start=True, at_end=False)[-overlap:]
    np.testing.assert_allclose(rising + falling, 1, atol=1e-6)
    assert rising[: overlap // 4].max(initial=0) == 0  # least-context pixels do not count


@pytest.mark.parametrize("tile,overlap", [(t, o) for t in TILES for o in OVERLAPS if _valid(t, o)])
def test_blending_weight_is_positive_on_every_pixel(tile, overlap):
    for height, width in [(7, 1000), (129, 300), (517, 65), (255, 255)]:
        grid = TileGrid((height, width), tile, overlap, multiple=8)
        total = np.zeros(grid.shape, dtype=np.float32)
        for placed in grid.tiles:
            total[placed.region] += grid.weights(placed)
        assert total.min() > 0


class LocalNetwork(nn.Module):
    """Three 3x3 convolutions: each output pixel sees only 3 pixels around it."""

    receptive_radius = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(6, 6, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(6, 2, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.fixture(scope="module")
def local_model() -> Model:
    return Model(LocalNetwork(), ModelInfo(architecture="local", network={"in_channels": 1}))


def _whole(model: Model, field: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model.network(torch.from_numpy(field[None]))).numpy()[0]


FIELD_SHAPES = [
    (5, 9),
    (40, 40),
    (63, 130),
    (100, 100),
    (129, 257),
    (300, 47),
    (16, 700),
    (700, 23),
    (333, 334),
]


@pytest.mark.parametrize(
    "tile,overlap,batch", [(64, 12, 1), (64, 20, 3), (100, 16, 4), (128, 31, 2), (48, 12, 5)]
)
def test_stitched_maps_equal_whole_image_maps_for_a_network_that_sees_less_than_the_dead_zone(
    local_model, tile, overlap, batch
):
    assert overlap // 4 >= LocalNetwork.receptive_radius
    runtime = Runtime(
        local_model, "torch", "cpu", threads=1, tile_size=tile, overlap=overlap, batch_size=batch
    )
    rng = np.random.default_rng(tile + overlap)
    for shape in FIELD_SHAPES:
        field = rng.random((1, *shape), dtype=np.float32)
        stitched = runtime.predict(field)
        assert stitched.shape == (2, *shape)
        np.testing.assert_allclose(
            stitched, _whole(local_model, field), atol=2e-6, err_msg=f"field {shape}"
        )


def test_labels_from_stitched_maps_equal_labels_from_whole_image_maps(local_model):
    rng = np.random.default_rng(1)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(1, 300, 420)), axis=1), axis=2)
    field = ((smooth - smooth.mean()) / smooth.std()).astype(np.float32)
    runtime = Runtime(
        local_model, "torch", "cpu", threads=1, tile_size=96, overlap=16, batch_size=4
    )
    settings = PostprocessSettings(foreground_threshold=0.5, seed_threshold=0.5, min_size=4)
    stitched, whole = runtime.predict(field), _whole(local_model, field)
    labels = maps_to_labels(stitched[0], stitched[1], settings)
    assert labels.max() > 3  # the comparison is about something
    np.testing.assert_array_equal(labels, maps_to_labels(whole[0], whole[1], settings))


def test_fields_batched_together_give_the_same_maps_as_one_by_one(local_model):
    runtime = Runtime(
        local_model, "torch", "cpu", threads=1, tile_size=64, overlap=12, batch_size=3
    )
    rng = np.random.default_rng(2)
    fields = [
        rng.random((1, *shape), dtype=np.float32)
        for shape in [(150, 90), (150, 90), (40, 200), (150, 90)]
    ]
    together = runtime.predict_many(fields)
    for field, maps in zip(fields, together):
        np.testing.assert_allclose(maps, runtime.predict(field), atol=1e-6)


@pytest.mark.parametrize("tile,overlap", [(128, 32), (192, 48), (256, 64)])
def test_stitched_unet_maps_match_whole_image_maps_within_tolerance(
    tiny_stem2_model, mnfinder_image, tile, overlap
):
    """A UNet sees far; stitching must still stay close to whole-image inference."""
    field = tiny_stem2_model.prepare(mnfinder_image)
    runtime = Runtime(tiny_stem2_model, "torch", "cpu", threads=1, tile_size=tile, overlap=overlap)
    assert len(runtime.grid(field.shape).tiles) > 1
    stitched = runtime.predict(field)
    whole = _whole(tiny_stem2_model, field)
    difference = np.abs(stitched - whole)
    assert difference.mean() < 2e-3
    assert np.quantile(difference, 0.999) < 0.05
    agree = (stitched[0] > 0.5) == (whole[0] > 0.5)
    assert agree.mean() > 0.999
