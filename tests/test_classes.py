"""A class head: class channels, targets, loss, model files, data with classes, export."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import tifffile
import torch
import torch.nn.functional as F

import cellseg_hcs as cs
from cellseg_hcs.model.model import Model, ModelInfo, load_model
from cellseg_hcs.model.unet import UNet, class_logits
from cellseg_hcs.runtime.export import export_model
from cellseg_hcs.training.data import ClassMaskFolders, CocoDataset, Sample, labels_to_coco
from cellseg_hcs.training.targets import NO_CLASS, class_index, instance_targets
from cellseg_hcs.training.train import _with_class_head, instance_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASS_OPTIONS = {
    "in_channels": 1,
    "out_channels": 4,
    "depth": 3,
    "width": 4,
    "stem": 2,
    "classes": 2,
}


def class_model(**info) -> Model:
    torch.manual_seed(0)
    return Model(
        UNet(**CLASS_OPTIONS),
        ModelInfo(
            network=dict(CLASS_OPTIONS),
            outputs=("foreground", "centre", "class:nucleus", "class:micronucleus"),
            classes=("nucleus", "micronucleus"),
            **info,
        ),
    )


def test_class_channels_come_out_of_the_sigmoid_as_probabilities_that_sum_to_one():
    network = UNet(**CLASS_OPTIONS).eval()
    with torch.no_grad():
        probabilities = torch.sigmoid(network(torch.rand(2, 1, 40, 52)))
    assert probabilities.shape == (2, 4, 40, 52)
    torch.testing.assert_close(probabilities[:, 2:].sum(1), torch.ones(2, 40, 52))


def test_class_index_is_each_pixels_object_class_and_no_class_on_background():
    labels = np.array([[0, 1, 1, 2, 3]])
    index = class_index(labels, np.array([NO_CLASS, 0, 1, 1]))
    assert index.tolist() == [[NO_CLASS, 0, 0, 1, 1]]
    targets = instance_targets(labels, "distance", np.array([NO_CLASS, 0, 1, 1]))
    assert targets.shape == (3, 1, 5) and targets[2].tolist() == [[-1, 0, 0, 1, 1]]


def _three_by_three(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random raw outputs (2 maps, 2 classes), their logits, and targets whose class plane
    has background (-1) and both classes: five object pixels, two of class 1."""
    torch.manual_seed(seed)
    raw = torch.randn(1, 4, 3, 3)
    logits = torch.cat([raw[:, :2], class_logits(raw[:, 2:])], dim=1)
    targets = torch.zeros(1, 3, 3, 3)
    targets[:, 2] = torch.tensor([[-1, 0, 0], [1, -1, 0], [-1, -1, 1]])
    return raw, logits, targets


def test_class_loss_is_the_weighted_cross_entropy_over_object_pixels_only():
    raw, logits, targets = _three_by_three(0)
    weights = torch.tensor([1.0, 4.0])
    base = instance_loss(logits, targets[:, :2])
    with_classes = instance_loss(logits, targets, class_weights=weights)
    # by hand: log_softmax of the raw class logits, the object pixels' classes, weighted mean
    log_p = F.log_softmax(raw[:, 2:], dim=1)[0]
    picked = [(0, 1, 0), (0, 2, 0), (1, 0, 1), (1, 2, 0), (2, 2, 1)]
    terms = [(weights[c], -log_p[c, y, x]) for y, x, c in picked]
    expected = sum(w * t for w, t in terms) / sum(w for w, _ in terms)
    torch.testing.assert_close(with_classes - base, expected)


def test_foreground_by_class_weighs_each_object_pixel_of_the_maps_by_its_class():
    _, logits, targets = _three_by_three(1)
    targets[:, 0] = (targets[:, 2] >= 0).float()
    targets[:, 1] = targets[:, 0] * 0.5
    weights = torch.tensor([1.0, 4.0])
    plain = instance_loss(logits, targets, class_weights=weights)
    weighted = instance_loss(logits, targets, class_weights=weights, foreground_by_class=True)
    # by hand: the two BCE terms' per-pixel losses, class-1 pixels times 4, mean over 9 pixels
    pixel = torch.tensor([[1.0, 1, 1], [4, 1, 1], [1, 1, 4]])
    fg = F.binary_cross_entropy_with_logits(logits[0, 0], targets[0, 0], reduction="none")
    dist = F.binary_cross_entropy_with_logits(logits[0, 1], targets[0, 1], reduction="none")
    extra = ((pixel - 1) * (fg + 2 * dist)).mean()
    torch.testing.assert_close(weighted - plain, extra)
    assert instance_loss(logits, targets[:, :2], foreground_by_class=True) == instance_loss(
        logits, targets[:, :2]
    )


def test_a_head_extended_with_classes_keeps_its_maps_and_starts_undecided():
    torch.manual_seed(0)
    plain = UNet(in_channels=1, out_channels=2, depth=3, width=4).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        before = plain(x)
        extended = _with_class_head(plain, 2).eval()
        after = torch.sigmoid(extended(x))
    torch.testing.assert_close(after[:, :2], torch.sigmoid(before))
    torch.testing.assert_close(after[:, 2:], torch.full_like(after[:, 2:], 0.5))


def test_a_class_model_file_keeps_its_classes_and_routing(tmp_path):
    model = class_model(
        class_objects={"micronucleus": "Micronuclei"},
        object_postprocess={"Micronuclei": {"min_size": 3}},
    )
    path = model.save(tmp_path / "classes.safetensors")
    loaded = load_model(path)
    assert loaded.info.classes == ("nucleus", "micronucleus")
    assert loaded.info.class_objects == {"micronucleus": "Micronuclei"}
    assert loaded.info.object_postprocess == {"Micronuclei": {"min_size": 3}}
    assert loaded.hash == model.hash


def test_a_model_without_classes_stores_none_of_the_class_fields(tmp_path):
    from safetensors import safe_open

    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4}
    path = Model(UNet(**options), ModelInfo(network=options)).save(tmp_path / "plain.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        stored = json.loads(handle.metadata()["cellseg_hcs"])
    assert not {"classes", "class_objects", "object_postprocess"} & set(stored)


def test_onnx_export_of_a_class_model_returns_every_map_as_torch_does(tmp_path):
    model = class_model()
    path = export_model(model, tmp_path / "classes.onnx")
    batch = np.random.default_rng(0).random((2, 1, 48, 72), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"image": batch})
    with torch.inference_mode():
        expected = torch.sigmoid(model.network(torch.from_numpy(batch))).numpy()
    assert probabilities.shape == (2, 4, 48, 72)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_tiled_maps_of_a_class_model_keep_class_probabilities_summing_to_one(backend):
    model = class_model()
    image = np.random.default_rng(1).random((150, 170)).astype(np.float32)
    maps = model.runtime(backend, tile_size=64, overlap=16).predict(model.prepare(image))
    assert maps.shape == (4, 150, 170)
    np.testing.assert_allclose(maps[2:].sum(0), 1.0, atol=1e-5)


def _write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / f"{name}.tif", array)


def test_class_mask_folders_merge_the_classes_into_one_labelled_sample(tmp_path):
    image = np.zeros((20, 20), np.uint16)
    nuclei = np.zeros((20, 20), np.uint16)
    nuclei[2:8, 2:8], nuclei[10:18, 10:18] = 5, 9
    small = np.zeros((20, 20), np.uint16)
    small[1:3, 12:14], small[7:9, 7:9] = 1, 2  # the second overlaps nucleus 5 at (7, 7)
    for folder, array in (("images", image), ("nuclei", nuclei), ("small", small)):
        _write(tmp_path / folder, "a", array)
    data = ClassMaskFolders(
        tmp_path / "images", {"nucleus": tmp_path / "nuclei", "micronucleus": tmp_path / "small"}
    )
    sample = data[0]
    assert sample.classes == {1: "nucleus", 2: "nucleus", 3: "micronucleus", 4: "micronucleus"}
    assert sample.labels[7, 7] == 1  # the earlier class keeps an overlapping pixel
    assert sample.labels[8, 8] == 4 and sample.labels[1, 12] == 3


def test_mnfinder_micronuclei_are_foreground_objects_of_their_own_class(mnfinder_dir):
    data = ClassMaskFolders(
        mnfinder_dir / "images",
        {
            "nucleus": mnfinder_dir / "nuclei_labels",
            "micronucleus": mnfinder_dir / "micronuclei_labels",
        },
    )
    sample = data[0]
    micronuclei = tifffile.imread(mnfinder_dir / "micronuclei_labels" / f"{sample.name}.tif")
    classes = [sample.classes[int(v)] for v in np.unique(sample.labels[micronuclei > 0])]
    assert classes and set(classes) == {"micronucleus"}
    assert (sample.labels[micronuclei > 0] > 0).mean() > 0.99


def _two_kinds(seed: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Bright large discs (class ``big``) and dim small squares (``small``)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(10, 2, (96, 96)).astype(np.float32)
    labels = np.zeros((96, 96), np.int32)
    classes = {}
    yy, xx = np.mgrid[:96, :96]
    for number, (y, x) in enumerate([(20, 20), (20, 70), (70, 20), (70, 70), (45, 45)], 1):
        if number % 2:
            mask = (yy - y) ** 2 + (xx - x) ** 2 <= 81
            image[mask] += 100
            classes[number] = "big"
        else:
            mask = (abs(yy - y) <= 3) & (abs(xx - x) <= 3)
            image[mask] += 50
            classes[number] = "small"
        labels[mask] = number
    return image, labels, classes


def test_a_coco_file_with_two_categories_trains_a_class_head_with_per_class_metrics(tmp_path):
    images, labels, classes = {}, {}, {}
    for seed in range(3):
        name = f"field{seed}.tif"
        images[name], labels[name], classes[name] = _two_kinds(seed)
        tifffile.imwrite(tmp_path / name, images[name])
    coco = labels_to_coco(labels, classes=classes)
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    data = CocoDataset(tmp_path / "annotations.json", tmp_path)
    assert [c["name"] for c in coco["categories"]] == ["big", "small"]
    assert set(data[0].classes.values()) == {"big", "small"}

    model = cs.train(
        data,
        epochs=1,
        steps_per_epoch=2,
        batch_size=2,
        width=4,
        depth=3,
        progress=False,
        augment=cs.training.augment.AugmentSettings(patch_size=64),
    )
    assert model.info.classes == ("big", "small")
    assert model.info.outputs[2:] == ("class:big", "class:small")
    scores = cs.training.evaluate.evaluate_model(model, data)
    for key in ("big_f1", "big_ap", "small_f1", "small_recall", "class_accuracy"):
        assert key in scores


def test_per_class_metrics_count_each_class_and_the_right_classes():
    from cellseg_hcs.field.micronuclei import DecodedObjects
    from cellseg_hcs.training.evaluate import ClassScores

    _, truth, truth_classes = _two_kinds(0)  # 3 big, 2 small
    predicted = truth.copy()
    predicted[predicted == 5] = 0  # one big object missed
    names = ["big", "small", "small", "small"]  # object 3 (big) called small
    decoded = DecodedObjects({"Objects": predicted}, classes={"Objects": (names, np.zeros((4, 2)))})
    scores = ClassScores(("big", "small"))
    scores.add(truth, truth_classes, decoded)
    out = scores.summary()
    assert (out["big_n_true"], out["big_n_pred"], out["big_recall"]) == (3, 1, 1 / 3)
    assert (out["small_n_true"], out["small_n_pred"], out["small_precision"]) == (2, 3, 2 / 3)
    assert out["class_accuracy"] == 3 / 4


def test_a_coco_file_with_one_category_has_no_classes(tmp_path):
    _, labels, _ = _two_kinds(0)
    tifffile.imwrite(tmp_path / "a.tif", labels.astype(np.uint16))
    (tmp_path / "a.json").write_text(json.dumps(labels_to_coco({"a.tif": labels})))
    assert CocoDataset(tmp_path / "a.json", tmp_path)[0].classes is None


def test_objects_with_one_class_only_are_refused_a_class_head():
    _, labels, _ = _two_kinds(0)
    sample = Sample(labels.astype(np.float32), labels, "a", {k: "big" for k in range(1, 6)})
    with pytest.raises(cs.errors.InputError, match="one class"):
        cs.train([sample], epochs=1, steps_per_epoch=1, progress=False)


@pytest.mark.parametrize("count", [2, 3, 5])
def test_class_logits_give_the_softmax_through_a_sigmoid_for_any_number_of_classes(count):
    z = torch.randn(2, count, 4, 5) * 5
    torch.testing.assert_close(torch.sigmoid(class_logits(z)), torch.softmax(z, dim=1))
    torch.testing.assert_close(F.logsigmoid(class_logits(z)), F.log_softmax(z, dim=1))


def test_the_train_command_learns_classes_from_one_mask_folder_per_class(tmp_path):
    from click.testing import CliRunner

    from cellseg_hcs.cli import main

    image, labels, classes = _two_kinds(0)
    big = np.where(np.isin(labels, [k for k, v in classes.items() if v == "big"]), labels, 0)
    for folder, array in (("images", image), ("big", big), ("small", labels - big)):
        _write(
            tmp_path / folder, "a", array.astype(np.float32 if folder == "images" else np.uint16)
        )
    out = tmp_path / "model.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "train", "--images", str(tmp_path / "images"), "--out", str(out),
            "--class-masks", f"big={tmp_path / 'big'}",
            "--class-masks", f"small={tmp_path / 'small'}",
            "--class-objects", "small=Specks", "--epochs", "1", "--steps", "1",
            "--width", "4", "--depth", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_model(out)
    assert model.info.classes == ("big", "small")
    assert model.info.class_objects == {"small": "Specks"}


def test_the_train_command_names_a_malformed_class_option():
    from click.testing import CliRunner

    from cellseg_hcs.cli import main

    result = CliRunner().invoke(
        main, ["train", "--images", ".", "--out", "m.safetensors", "--class-masks", "big"]
    )
    assert result.exit_code != 0 and "--class-masks takes NAME=VALUE" in result.output
