"""Opening OME-Zarr HCS plates and writing NGFF labels into them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from plate_helpers import make_plate

from cellseg_hcs.errors import InputError
from cellseg_hcs.io.plate import (
    open_plate,
    read_field,
    write_field_labels,
)


def test_full_resolution_level_is_found_by_its_path_in_multiscales(tmp_path):
    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1, ngff_version="0.4")
    field_dir = tmp_path / "plate.zarr" / "B" / "02" / "0"
    attrs = json.loads((field_dir / ".zattrs").read_text())
    datasets = attrs["multiscales"][0]["datasets"]
    # Rename the levels: the full resolution is now "full", listed first, and no "0" exists.
    for dataset, new in zip(datasets, ("full", "half")):
        (field_dir / dataset["path"]).rename(field_dir / new)
        dataset["path"] = new
    (field_dir / ".zattrs").write_text(json.dumps(attrs))

    plate = open_plate(tmp_path / "plate.zarr")
    image = read_field(plate.path, plate.fields[0])
    assert image.shape == (128, 128)
    assert [d["path"] for d in image.datasets] == ["full", "half"]


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
def test_labels_are_readable_by_ome_zarr_as_labels_of_the_image(tmp_path, ngff_version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1, ngff_version=ngff_version)
    plate = open_plate(tmp_path / "plate.zarr")
    field = plate.fields[0]
    image = read_field(plate.path, field)
    labels = np.zeros(image.shape, np.uint16)
    labels[10:20, 30:45] = 1
    labels[60:64, 60:64] = 2
    write_field_labels(plate.path, field, "Nuclei", labels, image)
    write_field_labels(plate.path, field, "Nuclei", labels, image)  # replacing is fine too

    nodes = list(Reader(parse_url(str(plate.path / field.path / "labels" / "Nuclei")))())
    label_node = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))
    assert label_node.metadata["name"] == "Nuclei"
    full = np.asarray(label_node.data[0])
    np.testing.assert_array_equal(full, labels)
    half = np.asarray(label_node.data[1])
    assert half.shape == (64, 64) and set(np.unique(half)) <= {0, 1, 2}
    assert not list((plate.path / field.path / "labels").glob(".Nuclei*"))  # no temporary left


def test_a_zarr_group_without_plate_metadata_is_not_a_plate(tmp_path):
    zarr.open_group(str(tmp_path / "image.zarr"), mode="w")
    with pytest.raises(InputError, match="not an OME-Zarr HCS plate"):
        open_plate(tmp_path / "image.zarr")


def test_a_missing_path_is_named_in_the_error(tmp_path):
    with pytest.raises(InputError, match="no such plate"):
        open_plate(tmp_path / "nowhere.zarr")


def test_the_plate_layout_lists_its_rows_and_columns_as_the_metadata_gives_them(tmp_path):
    make_plate(tmp_path / "plate.zarr", wells=("B02", "C05"), sites=1)
    plate = open_plate(tmp_path / "plate.zarr")
    assert plate.rows == ("B", "C")
    assert plate.columns == ("02", "05")
