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


def tiny_training(data, steps: int) -> Model:
    """A few steps of a tiny class model: what it learns is not the point, its classes are."""
    return cs.train(
        data,
        epochs=1,
        steps_per_epoch=steps,
        batch_size=2,
        width=4,
        depth=3,
        progress=False,
        augment=cs.training.augment.AugmentSettings(patch_size=64),
    )


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

    model = tiny_training(data, steps=2)
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


def test_a_coco_crowd_annotation_is_not_an_object(tmp_path):
    image, labels, classes = _two_kinds(0)
    tifffile.imwrite(tmp_path / "a.tif", image)
    coco = labels_to_coco({"a.tif": labels}, classes={"a.tif": classes})
    crowd = dict(coco["annotations"][0], id=99, iscrowd=1)  # a region of many, not one
    coco["annotations"].append(crowd)
    (tmp_path / "a.json").write_text(json.dumps(coco))
    sample = CocoDataset(tmp_path / "a.json", tmp_path)[0]
    assert sample.labels.max() == 5 and len(sample.classes) == 5


def test_classes_keep_the_order_of_the_coco_category_ids(tmp_path):
    image, labels, classes = _two_kinds(0)
    tifffile.imwrite(tmp_path / "a.tif", image)
    coco = labels_to_coco({"a.tif": labels}, classes={"a.tif": classes})
    ids = {"big": 12, "small": 5}  # not 1..K, and "small" first by id
    for category in coco["categories"]:
        old, category["id"] = category["id"], ids[category["name"]]
        for annotation in coco["annotations"]:
            if annotation["category_id"] == old:
                annotation["category_id"] = -category["id"]
    for annotation in coco["annotations"]:
        annotation["category_id"] = -annotation["category_id"]
    (tmp_path / "a.json").write_text(json.dumps(coco))
    data = CocoDataset(tmp_path / "a.json", tmp_path)
    assert data.class_names == ("small", "big")
    assert data[0].classes == classes


def test_a_class_model_learns_its_classes_in_the_order_of_the_class_folders(tmp_path):
    """The first image has no object of the first class: the order is still the folders'."""
    image, labels, classes = _two_kinds(0)
    big = np.where(np.isin(labels, [k for k, v in classes.items() if v == "big"]), labels, 0)
    folders = {"a": (np.zeros_like(big), labels - big), "b": (big, 0 * big)}
    for name, (big_ones, small_ones) in folders.items():
        _write(tmp_path / "images", name, image)
        _write(tmp_path / "big", name, big_ones.astype(np.uint16))
        _write(tmp_path / "small", name, small_ones.astype(np.uint16))
    data = ClassMaskFolders(
        tmp_path / "images", {"big": tmp_path / "big", "small": tmp_path / "small"}
    )
    assert set(data[0].classes.values()) == {"small"}
    assert tiny_training(data, steps=1).info.classes == ("big", "small")


def mask_folder_with_a_class_csv(folder) -> dict[int, str]:
    """One image in ``images/``, its mask in ``masks/``, its objects' classes in
    ``classes.csv``; returns the classes."""
    image, labels, classes = _two_kinds(0)
    _write(folder / "images", "a", image)
    _write(folder / "masks", "a", labels.astype(np.uint16))
    rows = ["image,object,class"] + [f"a,{k},{v}" for k, v in sorted(classes.items())]
    (folder / "classes.csv").write_text("\n".join(rows) + "\n")
    return classes


def test_a_per_object_class_csv_gives_the_objects_of_a_mask_folder_their_classes(tmp_path):
    from cellseg_hcs.training.data import ImageMaskFolder, ObjectClassCsv

    classes = mask_folder_with_a_class_csv(tmp_path)
    folder = ImageMaskFolder(tmp_path / "images", tmp_path / "masks")
    data = ObjectClassCsv(folder, tmp_path / "classes.csv")
    assert data.class_names == ("big", "small") and data[0].classes == classes
    (tmp_path / "typo.csv").write_text("image,object,class\nb,1,big\n")
    with pytest.raises(cs.errors.InputError, match="image 'b' is not among the training"):
        ObjectClassCsv(folder, tmp_path / "typo.csv")
    (tmp_path / "absent.csv").write_text("image,object,class\na,9,big\na,1,small\n")
    with pytest.raises(cs.errors.InputError, match="has no object 9 in its mask"):
        ObjectClassCsv(folder, tmp_path / "absent.csv")[0]


def test_the_train_command_learns_classes_from_a_class_csv(tmp_path):
    from click.testing import CliRunner

    from cellseg_hcs.cli import main

    mask_folder_with_a_class_csv(tmp_path)
    out = tmp_path / "model.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
            "--class-csv", str(tmp_path / "classes.csv"), "--out", str(out),
            "--epochs", "1", "--steps", "1", "--width", "4", "--depth", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_model(out).info.classes == ("big", "small")


def test_the_sartorius_csv_gives_each_object_its_cell_type(tmp_path):
    from cellseg_hcs.training.data import RleCsv, rle_encode

    image, labels, classes = _two_kinds(0)
    tifffile.imwrite(tmp_path / "a.tif", image)
    rows = ["id,annotation,cell_type"]
    for number, name in sorted(classes.items()):
        rows.append(f"a,{rle_encode(labels == number)},{name}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    data = RleCsv(tmp_path / "train.csv", tmp_path)
    assert data.class_names == ("big", "small") and data[0].classes == classes


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--class-masks", "a=x", "--class-masks", "a=y"], "--class-masks names 'a' twice"),
        (["--class-csv", "c.csv"], "--class-csv names the objects of --masks"),
    ],
)
def test_the_train_command_refuses_ambiguous_class_options(options, said):
    from click.testing import CliRunner

    from cellseg_hcs.cli import main

    result = CliRunner().invoke(main, ["train", "--images", ".", "--out", "m.st", *options])
    assert result.exit_code != 0 and said in result.output


def test_routing_a_class_the_data_has_not_is_refused():
    image, labels, classes = _two_kinds(0)
    sample = Sample(image, labels, "a", classes)
    with pytest.raises(cs.errors.InputError, match="class_objects names smal, which"):
        cs.train([sample], epochs=1, steps_per_epoch=1, progress=False, class_objects={"smal": "S"})


def test_a_class_models_own_objects_are_scored_without_the_objects_routed_elsewhere():
    """A true micronucleus is not a missed nucleus; a false object on an image with no true
    objects counts against its class."""
    from cellseg_hcs.training.evaluate import evaluate_model

    image, labels, classes = _two_kinds(0)
    maps = np.zeros((4, *labels.shape), np.float32)
    maps[0] = labels > 0
    for number in range(1, 6):
        ys, xs = np.nonzero(labels == number)
        distance = np.hypot(ys - ys.mean(), xs - xs.mean())
        maps[1][ys, xs] = 1 - distance / (distance.max() + 1)
    small = np.isin(labels, [k for k, v in classes.items() if v == "small"])
    maps[3], maps[2] = small, 1 - small
    model = class_model(
        object_name="Objects",
        class_objects={"micronucleus": "Specks"},
        postprocess={"min_size": 10, "min_score": 0.0, "merge_height": 0.0},
        object_postprocess={"Specks": {"min_size": 10}},
    )
    named = {k: {"big": "nucleus", "small": "micronucleus"}[v] for k, v in classes.items()}
    empty = Sample(image, np.zeros_like(labels), "empty", None)
    scores = evaluate_model(model, [Sample(image, labels, "a", named), empty], maps=[maps, maps])
    assert scores["recall"] == 1.0 and scores["n_true"] == 3  # the 3 big ones only
    assert scores["micronucleus_n_true"] == 2 and scores["micronucleus_n_pred"] == 4


def test_a_three_class_head_exports_a_log_sum_exp_stable_for_large_logits(tmp_path):
    """Written out with the largest logit taken out first (no fused ReduceLogSumExp): the
    exported graph gives the softmax in any runtime, for logits far beyond exp's range."""
    import onnx

    torch.manual_seed(0)
    options = dict(CLASS_OPTIONS, out_channels=5, classes=3)
    network = UNet(**options)
    with torch.no_grad():
        network.head.weight.mul_(400)  # logits in the hundreds
    model = Model(
        network,
        ModelInfo(
            network=options,
            outputs=("foreground", "centre", "class:a", "class:b", "class:c"),
            classes=("a", "b", "c"),
        ),
    )
    path = export_model(model, tmp_path / "three.onnx")
    operators = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ReduceLogSumExp" not in operators
    batch = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    (probabilities,) = ort.InferenceSession(str(path)).run(None, {"image": batch})
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities[:, 2:].sum(1), 1.0, atol=1e-5)


def test_the_train_command_prints_per_class_metrics_of_a_coco_validation_set(tmp_path):
    from click.testing import CliRunner

    from cellseg_hcs.cli import main

    for split, seeds in (("train", (0, 1)), ("val", (2,))):
        images, labels, classes = {}, {}, {}
        (tmp_path / split).mkdir()
        for seed in seeds:
            name = f"field{seed}.tif"
            images[name], labels[name], classes[name] = _two_kinds(seed)
            tifffile.imwrite(tmp_path / split / name, images[name])
        coco = labels_to_coco(labels, classes=classes)
        (tmp_path / f"{split}.json").write_text(json.dumps(coco))
    result = CliRunner().invoke(
        main,
        [
            "train", "--images", str(tmp_path / "train"), "--coco", str(tmp_path / "train.json"),
            "--val-images", str(tmp_path / "val"), "--val-coco", str(tmp_path / "val.json"),
            "--out", str(tmp_path / "m.safetensors"),
            "--epochs", "1", "--steps", "1", "--width", "4", "--depth", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "class big: F1 " in result.output and "(3 true objects)" in result.output
    assert "class small: F1 " in result.output and "(2 true objects)" in result.output
