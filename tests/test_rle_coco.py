"""RLE (Kaggle) and COCO encodings round-trip, and match hand-worked examples."""

import json

import numpy as np
import pytest

from cellseg_hcs.training.data import CocoDataset, RleCsv, labels_to_coco, rle_decode, rle_encode
from cellseg_hcs.training.data.coco import coco_rle_decode, coco_rle_encode


def test_kaggle_rle_is_column_major_and_one_based():
    mask = np.array([[0, 1, 0], [1, 1, 0]])
    # column-major pixels: (0,0)=0 (1,0)=1 | (0,1)=1 (1,1)=1 | (0,2)=0 (1,2)=0
    # pixel numbers 1..6: run starts at 2, length 3
    assert rle_encode(mask) == "2 3"
    assert rle_decode("2 3", (2, 3)).astype(int).tolist() == mask.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_kaggle_rle_round_trips_random_masks(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((17, 23)) > 0.6
    assert np.array_equal(rle_decode(rle_encode(mask), mask.shape), mask)


def test_empty_mask_encodes_to_empty_string():
    assert rle_encode(np.zeros((3, 3))) == ""
    assert not rle_decode("", (3, 3)).any()


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_coco_rle_round_trips(seed, compress):
    rng = np.random.default_rng(seed)
    mask = rng.random((31, 40)) > 0.5
    mask[0, 0] = seed % 2 == 0  # both a leading foreground and a leading background run
    assert np.array_equal(coco_rle_decode(coco_rle_encode(mask, compress=compress)), mask)


def test_coco_compressed_counts_match_a_known_string():
    # Runs [0 zeros? no] -> counts [3, 2, 1]: 3 zeros, 2 ones, 1 zero in a 6-pixel column.
    rle = coco_rle_encode(np.array([[0], [0], [0], [1], [1], [0]]))
    assert rle["counts"] == "321"  # small counts are one character each: chr(48 + n)
    assert rle["size"] == [6, 1]


def test_labels_to_coco_and_back_gives_the_same_objects(tmp_path):
    import tifffile

    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 3:9] = 1
    labels[10:18, 15:28] = 2
    tifffile.imwrite(tmp_path / "a.tif", (labels > 0).astype(np.uint8) * 100)
    coco = labels_to_coco({"a.tif": labels})
    assert [a["area"] for a in coco["annotations"]] == [36, 104]
    (tmp_path / "a.json").write_text(json.dumps(coco))
    sample = CocoDataset(tmp_path / "a.json", tmp_path)[0]
    assert np.array_equal(sample.labels > 0, labels > 0)
    assert len(np.unique(sample.labels)) == 3


def test_coco_polygons_are_rasterised(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "p.tif", np.zeros((10, 10), np.uint8))
    coco = {
        "images": [{"id": 1, "file_name": "p.tif", "height": 10, "width": 10}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]],
                "iscrowd": 0,
            }
        ],
    }
    (tmp_path / "p.json").write_text(json.dumps(coco))
    labels = CocoDataset(tmp_path / "p.json", tmp_path)[0].labels
    assert labels[4, 4] == 1 and labels[8, 8] == 0
    assert 9 <= (labels > 0).sum() <= 25


def test_rle_csv_builds_one_label_per_row(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "img1.tif", np.zeros((4, 5), np.uint8))
    a = np.zeros((4, 5), bool)
    a[0:2, 0:2] = True
    b = np.zeros((4, 5), bool)
    b[2:4, 3:5] = True
    rows = ["id,annotation,width,height", f"img1,{rle_encode(a)},5,4", f"img1,{rle_encode(b)},5,4"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    sample = RleCsv(tmp_path / "train.csv", tmp_path)[0]
    assert sample.labels[0, 0] == 1 and sample.labels[3, 4] == 2
    assert sample.labels.max() == 2
