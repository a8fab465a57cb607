"""A cell model trains from a Cellpose folder or from two-channel image + mask folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import disk
from PIL import Image

import cellseg_hcs as cs
from cellseg_hcs.cli import main
from cellseg_hcs.errors import InputError
from cellseg_hcs.field.cells import cells_from_maps
from cellseg_hcs.training.augment import AugmentSettings
from cellseg_hcs.training.data import (
    CELL_MODEL_CHANNELS,
    CellposeFolder,
    ImageMaskFolder,
    training_folder,
)

TINY = {
    "width": 4,
    "depth": 2,
    "batch_size": 2,
    "steps_per_epoch": 2,
    "augment": AugmentSettings(patch_size=48),
}


def cells_field(seed: int, shape=(64, 64)):
    """Cell stain, nuclei stain and cell labels: round cells, each with a smaller nucleus."""
    rng = np.random.default_rng(seed)
    cells = np.zeros(shape, np.uint16)
    nuclei = np.zeros(shape, bool)
    for number in range(1, 5):
        centre = rng.integers(12, shape[0] - 12, 2)
        cells[disk(shape, centre, 10) & (cells == 0)] = number
        nuclei |= disk(shape, centre, 4) & (cells == number)
    stain = (20 + 150 * (cells > 0) + rng.normal(0, 5, shape)).clip(0, 255).astype(np.uint8)
    dna = (10 + 200 * nuclei + rng.normal(0, 5, shape)).clip(0, 255).astype(np.uint8)
    return stain, dna, cells


def write_cellpose_folder(folder, count=2):
    folder.mkdir()
    for seed in range(count):
        stain, dna, cells = cells_field(seed)
        rgb = np.zeros((*stain.shape, 3), np.uint8)
        rgb[..., 1] = stain  # Cellpose: cell stain green, nuclei red
        rgb[..., 0] = dna
        Image.fromarray(rgb).save(folder / f"{seed:03d}_img.png")
        Image.fromarray(cells).save(folder / f"{seed:03d}_masks.png")
    return folder


def test_cellpose_folder_gives_cell_stain_then_nuclei(tmp_path):
    folder = write_cellpose_folder(tmp_path / "train")
    dataset = CellposeFolder(folder)
    stain, dna, cells = cells_field(1)

    assert CELL_MODEL_CHANNELS == ("cell stain", "nuclei")
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample.name == "001"
    np.testing.assert_array_equal(sample.image[0], stain)
    np.testing.assert_array_equal(sample.image[1], dna)
    np.testing.assert_array_equal(sample.labels, cells)


def test_cellpose_images_without_masks_are_listed_and_an_empty_folder_refused(tmp_path):
    folder = write_cellpose_folder(tmp_path / "train")
    (folder / "001_masks.png").unlink()
    assert CellposeFolder(folder).unmatched == ["001_img.png"]
    (folder / "000_masks.png").unlink()
    with pytest.raises(InputError, match="no NAME_img image with a NAME_masks mask"):
        CellposeFolder(folder)


def test_a_grey_cellpose_image_is_the_cell_stain_alone(tmp_path):
    folder = tmp_path / "grey"
    folder.mkdir()
    stain, _, cells = cells_field(0)
    Image.fromarray(stain).save(folder / "a_img.png")
    Image.fromarray(cells).save(folder / "a_masks.png")
    assert CellposeFolder(folder)[0].image.shape == (1, 64, 64)


def test_two_channel_images_and_label_folders_train_a_two_channel_model(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for seed in range(2):
        stain, dna, cells = cells_field(seed)
        tifffile.imwrite(images / f"f{seed}.tif", np.stack([stain, dna]))
        tifffile.imwrite(masks / f"f{seed}.tif", cells)
    dataset = training_folder(images, masks)
    assert isinstance(dataset, ImageMaskFolder)
    assert dataset[0].image.shape == (2, 64, 64)

    model = cs.train(dataset, epochs=1, progress=False, seed=0, **TINY)
    assert model.info.in_channels == 2


def test_train_command_trains_a_cell_model_from_a_cellpose_folder(tmp_path):
    train = write_cellpose_folder(tmp_path / "train")
    out = tmp_path / "cells.safetensors"
    arguments = ["train", "--images", str(train), "--val-images", str(train), "--out", str(out)]
    tiny = ["--epochs", "1", "--steps", "2", "--width", "4", "--depth", "2"]
    result = CliRunner().invoke(main, arguments + tiny)
    assert result.exit_code == 0, result.output

    model = cs.load_model(out)
    assert model.info.in_channels == 2
    stain, dna, cells = cells_field(5)
    maps = model.predict_maps(np.stack([stain, dna]), backend="torch")
    nuclei = np.zeros(cells.shape, np.uint16)
    nuclei[dna > 100] = cells[dna > 100]
    grown = cells_from_maps(nuclei, maps)
    assert grown.shape == cells.shape
    np.testing.assert_array_equal(grown[nuclei > 0], nuclei[nuclei > 0])


def test_train_command_refuses_validation_masks_for_cellpose_folders(tmp_path):
    train = write_cellpose_folder(tmp_path / "train")
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--images",
            str(train),
            "--val-images",
            str(train),
            "--val-masks",
            str(train),
            "--out",
            str(tmp_path / "m.safetensors"),
        ],
    )
    assert result.exit_code == 2
    assert "--val-masks goes with --masks" in result.output
