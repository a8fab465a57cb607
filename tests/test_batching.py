"""Full batches across fields (issue #20, finding 12): threads predicting fields at the same
time share batches, and each gets exactly the maps it would get alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from gpu_stand_ins import at_once

from cellseg_hcs.model.model import Model, ModelInfo
from cellseg_hcs.model.unet import UNet
from cellseg_hcs.runtime import Runtime
from cellseg_hcs.runtime.batching import TileBatcher

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEG_HCS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "stem": 2}
    return Model(UNet(**options), ModelInfo(network=options))


def _fields(count: int, seed: int) -> list[np.ndarray]:
    # 128 x 330 at tile 128: three tiles a field, so a batch of four always mixes fields.
    rng = np.random.default_rng(seed)
    return [rng.random((1, 128, 330), dtype=np.float32) for _ in range(count)]


def test_fields_predicted_by_several_threads_share_full_batches_and_keep_their_own_maps(model):
    runtime = Runtime(model, "torch", "cpu", tile_size=128, overlap=16, batch_size=4, batch_wait=2)
    alone = Runtime(model, "torch", "cpu", tile_size=128, overlap=16, batch_size=4)
    fields = {thread: _fields(3, seed=thread) for thread in range(4)}
    maps: dict[int, list[np.ndarray]] = {}
    names = iter(range(4))
    lock = threading.Lock()

    def predict_my_fields():
        with lock:
            thread = next(names)
        maps[thread] = [runtime.predict(field) for field in fields[thread]]

    at_once(predict_my_fields, threads=4)

    assert len(alone.grid(fields[0][0].shape).tiles) == 3
    for thread, own in fields.items():
        for field, predicted in zip(own, maps[thread]):
            np.testing.assert_allclose(predicted, alone.predict(field), atol=1e-5)
    batches = runtime.batches
    tiles = sum(size * count for size, count in batches.items())
    assert tiles == 4 * 3 * 3
    # Alone, every field is one batch of 3; together, most tiles run in batches of 4.
    assert alone.batches == {3: 12}
    assert batches.get(4, 0) * 4 >= 0.75 * tiles, batches


def test_a_single_caller_never_waits_for_a_full_batch():
    sizes: list[int] = []
    batcher = TileBatcher(lambda tiles: sizes.append(len(tiles)) or tiles, 4, max_wait=60)
    tiles = [np.full((1, 2, 2), i, np.float32) for i in range(6)]
    results = batcher.run(tiles)
    assert sizes == [4, 2]
    assert [int(r[0, 0, 0]) for r in results] == list(range(6))


def test_predictions_come_back_to_their_own_caller_in_order():
    batcher = TileBatcher(lambda tiles: [tile * 10 for tile in tiles], 4, max_wait=0.05)
    results: dict[int, list[float]] = {}
    lock = threading.Lock()
    names = iter(range(5))

    def call():
        with lock:
            caller = next(names)
        tiles = [np.full((1, 3, 3), caller * 100 + i, np.float32) for i in range(7)]
        results[caller] = [float(r[0, 0, 0]) for r in batcher.run(tiles)]

    at_once(call, threads=5)
    for caller, values in results.items():
        assert values == [(caller * 100 + i) * 10 for i in range(7)]


def test_tiles_of_different_shapes_never_share_a_batch():
    shapes: list[set] = []

    def run(tiles):
        shapes.append({tile.shape for tile in tiles})
        return tiles

    batcher = TileBatcher(run, 8)
    batcher.run([np.zeros((1, 4, 4)), np.zeros((1, 4, 6)), np.zeros((1, 4, 4))])
    assert all(len(kinds) == 1 for kinds in shapes) and len(shapes) == 2


def test_a_failed_batch_fails_its_callers_and_the_batcher_goes_on():
    calls: list[int] = []

    def run(tiles):
        calls.append(len(tiles))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access")
        return tiles

    batcher = TileBatcher(run, 4)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        batcher.run([np.zeros((1, 2, 2))] * 6)
    assert len(batcher.run([np.ones((1, 2, 2))] * 2)) == 2
    assert calls == [4, 2]  # the failed caller's two other tiles were dropped, never run
