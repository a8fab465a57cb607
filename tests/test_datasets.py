"""Dataset layouts all yield (image, instance labels) samples."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellseg_hcs.errors import InputError
from cellseg_hcs.training.data import ImageMaskFolder, ObjectMaskFolders, Subset


def _write_pair(images, masks, stem, labels, mask_name=None, suffix=".tif"):
    image = (labels > 0).astype(np.uint16) * 1000 + 100
    tifffile.imwrite(images / f"{stem}.tif", image)
    target = masks / f"{mask_name or stem}{suffix}"
    if suffix == ".png":
        Image.fromarray(labels.astype(np.uint8)).save(target)
    else:
        tifffile.imwrite(target, labels)


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    return images, masks


def test_image_and_label_folders_pair_by_name_with_common_mask_suffixes(folders):
    images, masks = folders
    labels = np.zeros((20, 20), np.uint16)
    labels[2:6, 2:6], labels[10:15, 10:15] = 1, 2
    _write_pair(images, masks, "a", labels)
    _write_pair(images, masks, "b", labels, mask_name="b_masks")
    _write_pair(images, masks, "c", labels, mask_name="c_cp_masks")
    dataset = ImageMaskFolder(images, masks)
    assert [s.name for s in dataset] == ["a", "b", "c"]
    np.testing.assert_array_equal(dataset[1].labels, labels)


def test_a_binary_mask_is_split_into_connected_objects(folders):
    images, masks = folders
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = mask[10:15, 10:15] = 255
    _write_pair(images, masks, "a", mask, suffix=".png")
    labels = ImageMaskFolder(images, masks)[0].labels
    assert sorted(np.unique(labels)) == [0, 1, 2]


def test_images_without_masks_are_listed_and_a_folder_with_none_is_an_error(folders):
    images, masks = folders
    labels = np.zeros((8, 8), np.uint16)
    labels[2:4, 2:4] = 1
    _write_pair(images, masks, "a", labels)
    tifffile.imwrite(images / "lonely.tif", labels)
    assert ImageMaskFolder(images, masks).unmatched == ["lonely.tif"]
    with pytest.raises(InputError, match="no image matching 'zz\\*' has a mask"):
        ImageMaskFolder(images, masks, pattern="zz*")


def test_a_mask_of_the_wrong_shape_names_the_file(folders):
    images, masks = folders
    tifffile.imwrite(images / "a.tif", np.zeros((10, 10), np.uint16))
    tifffile.imwrite(masks / "a.tif", np.ones((12, 12), np.uint16))
    with pytest.raises(InputError, match="a.tif: mask shape"):
        ImageMaskFolder(images, masks)[0]


def test_dsb2018_one_mask_per_object_folders_combine_into_labels(tmp_path):
    sample = tmp_path / "abc123"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(sample / "images" / "abc123.png")
    for number, box in enumerate([(slice(1, 5), slice(1, 5)), (slice(8, 14), slice(8, 14))]):
        mask = np.zeros((16, 16), np.uint8)
        mask[box] = 255
        Image.fromarray(mask).save(sample / "masks" / f"m{number}.png")
    dataset = ObjectMaskFolders(tmp_path)
    labels = dataset[0].labels
    assert len(dataset) == 1 and sorted(np.unique(labels)) == [0, 1, 2]
    assert (labels == 2).sum() == 36


def test_real_mnfinder_images_load_with_their_labels(mnfinder_dir):
    dataset = ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    assert len(dataset) == 4
    for sample in dataset:
        assert sample.image.shape == sample.labels.shape
        assert sample.labels.max() >= 5


def test_a_subset_picks_samples_by_index(mnfinder_dir):
    dataset = ImageMaskFolder(mnfinder_dir / "images", mnfinder_dir / "nuclei_labels")
    subset = Subset(dataset, [3, 1])
    assert [s.name for s in subset] == [dataset[3].name, dataset[1].name]
