"""Training: repeatable from its seed, learns real structure, keeps the best epoch."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from conftest import disk

import cellseg_hcs as cs
from cellseg_hcs.cli import main
from cellseg_hcs.training.augment import AugmentSettings
from cellseg_hcs.training.data import Sample
from cellseg_hcs.training.train import instance_loss, learning_rate_at, update_average

SMALL = {
    "width": 4,
    "depth": 3,
    "batch_size": 2,
    "steps_per_epoch": 3,
    "augment": AugmentSettings(patch_size=48),
}


def _blobs(seed: int, shape=(96, 96), count=8) -> Sample:
    """A synthetic field of bright disks (some touching) on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for index in range(1, count + 1):
        center = rng.integers(10, shape[0] - 10, 2)
        labels[disk(shape, center, int(rng.integers(5, 9))) & (labels == 0)] = index
    image = 200 + 800 * (labels > 0) + rng.normal(0, 40, shape)
    return Sample(image.astype(np.uint16), labels, f"blobs{seed}")


def test_the_same_seed_trains_the_same_weights():
    data = [_blobs(0), _blobs(1)]
    first = cs.train(data, epochs=2, progress=False, seed=3, **SMALL)
    second = cs.train(data, epochs=2, progress=False, seed=3, **SMALL)
    for a, b in zip(first.network.state_dict().values(), second.network.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_training_on_blobs_learns_to_find_them():
    data = [_blobs(seed) for seed in range(4)]
    validation = [_blobs(10), _blobs(11)]
    model = cs.train(
        data,
        validation=validation,
        epochs=6,
        progress=False,
        seed=0,
        width=8,
        depth=3,
        batch_size=4,
        steps_per_epoch=10,
        learning_rate=5e-3,
        augment=AugmentSettings(patch_size=64, wide_scale_probability=0.0),
    )
    history = model.info.training["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert model.info.metrics["val_f1"] >= 0.7
    best = max(history, key=lambda r: (round(r["val_ap"], 4), r["val_f1"]))
    assert model.info.training["best_epoch"] == best["epoch"]


def test_fine_tuning_starts_from_the_given_model_and_keeps_its_architecture():
    data = [_blobs(seed) for seed in range(4)]
    options = {
        "batch_size": 4,
        "steps_per_epoch": 10,
        "learning_rate": 5e-3,
        "seed": 0,
        "progress": False,
        "augment": AugmentSettings(patch_size=64, wide_scale_probability=0.0),
    }
    base = cs.train(data, epochs=6, width=8, depth=3, **options)
    base.info.postprocess["seed_threshold"] = 0.45
    before = {k: v.clone() for k, v in base.network.state_dict().items()}

    tuned = cs.train(data, epochs=1, start_from=base, width=32, depth=5, **options)
    scratch = cs.train(data, epochs=1, width=8, depth=3, **options)

    assert tuned.info.network == base.info.network  # width/depth of the base, not 32/5
    assert tuned.info.postprocess["seed_threshold"] == 0.45
    assert tuned.info.training["started_from"]["hash"] == base.hash
    # It learns on from where the base stopped, well below a fresh start's first epoch...
    assert (
        tuned.info.training["history"][0]["loss"]
        < 0.8 * scratch.info.training["history"][0]["loss"]
    )
    # ...and the base model itself is left as it was.
    for key, value in base.network.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_the_weight_average_moves_part_of_the_way_and_copies_step_counts():
    averaged, trained = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    with torch.no_grad():
        trained.weight.fill_(3.0)
        trained.running_mean.fill_(2.0)
        trained.num_batches_tracked.fill_(7)
    update_average(averaged, trained, 0.75)
    torch.testing.assert_close(averaged.weight, torch.full((2,), 0.25 * 3.0 + 0.75 * 1.0))
    torch.testing.assert_close(averaged.running_mean, torch.full((2,), 0.25 * 2.0))
    assert int(averaged.num_batches_tracked) == 7


def test_training_with_a_weight_average_returns_the_average_not_the_last_weights():
    data = [_blobs(0), _blobs(1)]
    plain = cs.train(data, epochs=2, progress=False, seed=3, **SMALL)
    averaged = cs.train(data, epochs=2, progress=False, seed=3, average=0.9, **SMALL)
    # The same seed trains the same weights; with average=0.9 over 6 steps the kept weights
    # lie between the starting weights and the trained ones, so they differ from the latter.
    start = cs.train(data, epochs=0, progress=False, seed=3, **SMALL)
    for name, trained in plain.network.state_dict().items():
        if not trained.is_floating_point() or "running" in name:
            continue
        kept, initial = averaged.network.state_dict()[name], start.network.state_dict()[name]
        moved, full = (kept - initial).norm(), (trained - initial).norm()
        assert moved < full, name
    with pytest.raises(cs.errors.InputError, match="average"):
        cs.train(data, epochs=1, progress=False, average=1.0, **SMALL)


def test_keep_last_returns_the_final_weights_even_with_validation():
    data = [_blobs(0), _blobs(1)]
    last = cs.train(
        data, validation=[_blobs(2)], epochs=2, progress=False, seed=3, keep="last", **SMALL
    )
    plain = cs.train(data, epochs=2, progress=False, seed=3, **SMALL)  # no validation: last
    for a, b in zip(last.network.state_dict().values(), plain.network.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert last.info.training["best_epoch"] == 2
    assert [len(r) for r in last.info.training["history"]] == [6, 6]  # val_f1, val_ap kept
    with pytest.raises(cs.errors.InputError, match="keep must be 'best' or 'last'"):
        cs.train(data, epochs=1, progress=False, keep="first", **SMALL)


def test_an_unknown_target_is_refused_before_training():
    with pytest.raises(cs.errors.InputError, match="unknown target 'edges'"):
        cs.train([_blobs(0)], epochs=1, progress=False, target="edges", **SMALL)


def test_fine_tuning_refuses_a_model_for_other_channels():
    two_channel = Sample(np.zeros((2, 64, 64), np.uint16), np.zeros((64, 64), np.int32), "x")
    base = cs.train([_blobs(0)], epochs=1, progress=False, **SMALL)
    with pytest.raises(cs.errors.InputError, match="1 channel"):
        cs.train([two_channel], epochs=1, progress=False, start_from=base, **SMALL)


def test_an_empty_dataset_is_refused():
    with pytest.raises(cs.errors.InputError, match="empty"):
        cs.train([], epochs=1, progress=False)


def test_an_unknown_setting_is_refused():
    with pytest.raises(TypeError, match="unknown setting 'widht'"):
        cs.train([_blobs(0)], epochs=1, progress=False, widht=8)


def test_loss_is_small_for_confident_right_maps_and_large_for_wrong_ones():
    targets = torch.zeros(1, 2, 8, 8)
    targets[:, :, 2:6, 2:6] = 1
    right = (targets * 2 - 1) * 20
    assert instance_loss(right, targets) < 0.05
    assert instance_loss(-right, targets) > 10


def test_learning_rate_warms_up_then_decays():
    assert learning_rate_at(0.0, 1.0) == pytest.approx(0.1)
    assert learning_rate_at(0.03, 1.0) == pytest.approx(1.0)
    assert learning_rate_at(1.0, 1.0) == pytest.approx(0.01)


def test_train_command_wants_both_validation_folders_or_neither(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--images",
            str(tmp_path),
            "--masks",
            str(tmp_path),
            "--out",
            str(tmp_path / "m.safetensors"),
            "--val-images",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "give both --val-images and --val-masks, or neither." in result.output


def test_train_command_writes_a_model_that_segments(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for seed in range(2):
        sample = _blobs(seed)
        tifffile.imwrite(images / f"f{seed}.tif", sample.image)
        tifffile.imwrite(masks / f"f{seed}.tif", sample.labels)
    out = tmp_path / "model.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--val-images",
            str(images),
            "--val-masks",
            str(masks),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--steps",
            "2",
            "--width",
            "4",
            "--depth",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "validation F1" in result.output
    assert cs.load_model(out).info.training["settings"]["device"] == "cpu"
    model = cs.load_model(out)
    assert model.info.training["images"] == str(images)
    assert model.segment(_blobs(5).image).shape == (96, 96)

    tuned = tmp_path / "tuned.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--out",
            str(tuned),
            "--epochs",
            "1",
            "--steps",
            "2",
            "--start-from",
            str(out),
            "--learning-rate",
            "1e-3",
            "--average",
            "0.99",
            "--target",
            "distance",
        ],
    )
    assert result.exit_code == 0, result.output
    tuned_model = cs.load_model(tuned)
    assert model.info.outputs == ("foreground", "centre")  # the default target
    assert tuned_model.info.outputs == ("foreground", "distance")
    assert tuned_model.info.network == model.info.network  # not the default width 16
    assert tuned_model.info.training["started_from"]["hash"] == model.hash
    assert tuned_model.info.training["settings"]["learning_rate"] == 1e-3
    assert tuned_model.info.training["settings"]["average"] == 0.99


def test_loader_processes_train_the_same_seed_to_the_same_weights_and_end_with_it():
    """Batches drawn by two loader processes: a model comes out, the same for the same
    seed (each process has its own random stream), and the processes are gone after."""
    import multiprocessing

    data = [_blobs(0), _blobs(1)]
    first = cs.train(data, epochs=2, progress=False, seed=3, loaders=2, **SMALL)
    second = cs.train(data, epochs=2, progress=False, seed=3, loaders=2, **SMALL)
    threaded = cs.train(data, epochs=2, progress=False, seed=3, **SMALL)
    assert first.info.training["steps"] == 2 * SMALL["steps_per_epoch"]
    for a, b in zip(first.network.state_dict().values(), second.network.state_dict().values()):
        torch.testing.assert_close(a, b)
    # The processes drew other batches than the one thread's stream: they really ran.
    weights = zip(first.network.state_dict().values(), threaded.network.state_dict().values())
    assert any(not torch.equal(a, b) for a, b in weights if a.is_floating_point())
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_the_training_record_keeps_the_device_used():
    model = cs.train([_blobs(0)], epochs=1, progress=False, device="auto", **SMALL)
    assert model.info.training["settings"]["device"] == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    assert {p.device.type for p in model.network.parameters()} == {"cpu"}
    assert model.info.training["history"][0]["step_seconds"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_asked_for_where_there_is_none_is_one_sentence_before_training(device, tmp_path):
    from cellseg_hcs.errors import InputError
    from cellseg_hcs.training.train import training_device

    assert training_device("auto").type == "cpu"
    out = tmp_path / "model.safetensors"
    with pytest.raises(InputError, match="no CUDA GPU here"):
        cs.train([_blobs(0)], epochs=1, progress=False, device=device, out=out, **SMALL)
    assert not out.exists()


def test_the_train_command_refuses_a_device_that_is_no_device_in_one_sentence(tmp_path):
    result = CliRunner().invoke(
        main,
        ["train", "--images", str(tmp_path), "--masks", str(tmp_path), "--out", "m.safetensors"]
        + ["--device", "gpu0"],
    )
    assert result.exit_code != 0
    assert "gpu0" in result.output and "Traceback" not in result.output


def test_a_device_that_is_no_device_is_refused():
    from cellseg_hcs.errors import CellSegError

    with pytest.raises(CellSegError, match="gpu0"):
        cs.train([_blobs(0)], epochs=1, progress=False, device="gpu0", **SMALL)


@pytest.mark.parametrize("name, made_current", [("cuda", None), ("cuda:1", 1), ("cpu", None)])
def test_only_a_numbered_gpu_is_made_the_current_one(name, made_current, monkeypatch):
    """torch.cuda.set_device refuses a device without a number (``cuda``), so training on
    ``cuda`` leaves the current GPU as it is; ``cuda:1`` becomes the current one."""
    from cellseg_hcs.training.train import make_current

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(device.index))
    make_current(torch.device(name))
    assert calls == ([] if made_current is None else [made_current])


def test_validating_each_epoch_frees_the_last_epochs_runtime(monkeypatch):
    """Each epoch validates with a fresh runtime (the weights changed). The one before must
    be freed then, not at Python's next full collection: a runtime in a reference cycle
    (its tile batcher held a bound method of it) kept an onnxruntime session of the default
    model, about 450 MB, per epoch, and a 108-epoch run grew to 24 GB and was killed."""
    import gc
    import weakref

    from cellseg_hcs.runtime import Runtime

    made = []
    original = Runtime.__init__

    def keep_a_weak_reference(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Runtime, "__init__", keep_a_weak_reference)
    gc.disable()  # as between Python's rare full collections
    try:
        cs.train([_blobs(0)], validation=[_blobs(1)], epochs=3, progress=False, **SMALL)
        alive = [ref() is not None for ref in made]
    finally:
        gc.enable()
    assert len(made) >= 3
    assert not any(alive[:-1]), alive  # only the last epoch's may still be kept
