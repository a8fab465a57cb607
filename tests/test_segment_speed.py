"""segment_files overlaps reading, the network and post-processing, with unchanged results."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from cellseg_hcs.errors import SettingError
from cellseg_hcs.segment import segment_files

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture
def tiny_model():
    """A hand-set model that labels the bright nuclei, so labels have objects to compare."""
    from plate_helpers import threshold_model

    return threshold_model()


@pytest.fixture
def images(mnfinder_dir, tmp_path):
    """Five real images (the four committed ones, one twice) in a folder of their own."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((mnfinder_dir / "images").glob("*.tif"))
    paths = []
    for index in range(5):
        target = folder / f"field{index}.tif"
        shutil.copy(sources[index % len(sources)], target)
        paths.append(target)
    return paths


def test_pipelined_segmentation_writes_exactly_the_labels_of_one_by_one_segmentation(
    images, tmp_path, tiny_model
):
    results = segment_files(
        images, tmp_path / "out", model=tiny_model, backend="torch", progress=False
    )
    assert [r.image for r in results] == images
    for result in results:
        expected = tiny_model.segment(tifffile.imread(result.image), backend="torch")
        written = tifffile.imread(result.labels)
        assert expected.max() > 1
        np.testing.assert_array_equal(written, expected)
        assert result.count == int(expected.max()) and result.seconds > 0


def test_an_error_while_reading_ahead_reaches_the_caller_as_the_same_one_sentence(
    images, tmp_path, tiny_model
):
    with pytest.raises(SettingError, match="has 1 channel"):
        segment_files(
            images, tmp_path / "out", model=tiny_model, channel=3, backend="torch", progress=False
        )


def test_an_unavailable_backend_is_refused_before_any_output_is_written(
    images, tmp_path, tiny_model
):
    from cellseg_hcs.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        segment_files(
            images, tmp_path / "out", model=tiny_model, backend="tensorrt", progress=False
        )
    assert not (tmp_path / "out").exists()
