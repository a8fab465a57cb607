"""`cellseg-hcs segment`: any common image file in, one uint16 label image out per input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

import cellseg_hcs as cs
from cellseg_hcs.cli import main


@pytest.fixture(scope="module")
def model():
    return cs.load_model("nuclei")


@pytest.fixture(scope="module")
def real_image(request):
    from conftest import MNFINDER

    path = sorted((MNFINDER / "images").glob("*MCC13*"))[0]
    return tifffile.imread(path)


def _segment(args):
    return CliRunner().invoke(main, ["segment", *map(str, args)])


def test_segment_writes_a_uint16_label_image_per_input(tmp_path, mnfinder_dir):
    images = sorted((mnfinder_dir / "images").glob("*.tif"))[:2]
    result = _segment([*images, "--out", tmp_path / "labels"])
    assert result.exit_code == 0, result.output
    for image in images:
        labels = tifffile.imread(tmp_path / "labels" / f"{image.stem}_labels.tif")
        assert labels.dtype == np.uint16
        assert labels.shape == tifffile.imread(image).shape
        assert labels.max() > 0
        assert sorted(np.unique(labels))[-1] == len(np.unique(labels)) - 1  # 1..N, no gaps


def test_python_api_and_command_give_the_same_labels(tmp_path, mnfinder_dir, model):
    image_path = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    assert _segment([image_path, "--out", tmp_path]).exit_code == 0
    written = tifffile.imread(tmp_path / f"{image_path.stem}_labels.tif")
    np.testing.assert_array_equal(written, model.segment(tifffile.imread(image_path)))


def test_png_8bit_input_finds_the_same_nuclei_as_16bit(tmp_path, real_image, model):
    scaled = real_image.astype(np.float64)
    scaled = (255 * (scaled - scaled.min()) / (scaled.max() - scaled.min())).astype(np.uint8)
    Image.fromarray(scaled).save(tmp_path / "eight.png")
    assert _segment([tmp_path / "eight.png", "--out", tmp_path]).exit_code == 0
    eight = tifffile.imread(tmp_path / "eight_labels.tif")
    sixteen = model.segment(real_image)
    assert abs(int(eight.max()) - int(sixteen.max())) <= max(2, 0.05 * sixteen.max())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_bit_depth_and_brightness_do_not_change_the_result_much(real_image, model, dtype):
    reference = model.segment(real_image)
    image = real_image.astype(np.float64) / real_image.max()
    image = image * {np.uint8: 60, np.uint16: 4000, np.float32: 1.0}[dtype]  # dim 8-bit too
    labels = model.segment(image.astype(dtype))
    overlap = ((labels > 0) & (reference > 0)).sum() / ((labels > 0) | (reference > 0)).sum()
    assert overlap > 0.9
    assert abs(int(labels.max()) - int(reference.max())) <= max(2, 0.05 * reference.max())


def test_a_channel_is_chosen_by_index_or_by_name(tmp_path, real_image, model):
    noise = np.random.default_rng(0).integers(0, 50, real_image.shape).astype(real_image.dtype)
    stack = np.stack([noise, real_image])
    tifffile.imwrite(
        tmp_path / "stack.ome.tif",
        stack,
        metadata={"axes": "CYX", "Channel": {"Name": ["Actin", "DAPI"]}},
    )
    expected = model.segment(real_image)
    for channel, name in [("1", "by_index"), ("DAPI", "by_name")]:
        out = tmp_path / name
        result = _segment([tmp_path / "stack.ome.tif", "--channel", channel, "--out", out])
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(tifffile.imread(out / "stack_labels.tif"), expected)


def test_an_unknown_channel_name_is_one_sentence_and_exit_2(tmp_path, real_image):
    tifffile.imwrite(
        tmp_path / "s.ome.tif",
        np.stack([real_image, real_image]),
        metadata={"axes": "CYX", "Channel": {"Name": ["A", "B"]}},
    )
    result = _segment([tmp_path / "s.ome.tif", "--channel", "DAPI", "--out", tmp_path / "o"])
    assert result.exit_code == 2
    assert "channel 'DAPI' is not in " in result.output
    assert "s.ome.tif; its channels are A, B." in result.output
    assert "Traceback" not in result.output


def test_a_missing_input_stops_before_anything_is_written(tmp_path, mnfinder_dir):
    good = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    result = _segment([good, tmp_path / "absent.tif", "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "absent.tif: no such image file." in result.output
    assert not (tmp_path / "out").exists()


def test_an_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    result = _segment([bad, "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "broken.tif: cannot be read as an image" in result.output
    assert not (tmp_path / "out").exists()  # nothing written, no empty folder left


def test_an_image_with_no_nuclei_gives_empty_labels(model):
    flat = np.full((200, 200), 500, np.uint16)
    assert model.segment(flat).max() == 0


def test_two_inputs_with_the_same_name_are_refused_before_anything_is_written(
    tmp_path, mnfinder_dir
):
    image = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    for folder in ("plate1", "plate2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "A01_s1.tif").write_bytes(image.read_bytes())
    result = _segment(
        [
            tmp_path / "plate1" / "A01_s1.tif",
            tmp_path / "plate2" / "A01_s1.tif",
            "--out",
            tmp_path / "out",
        ]
    )
    assert result.exit_code == 2 and "would both be written as A01_s1_labels.tif" in result.output
    assert not (tmp_path / "out").exists()


def test_an_unreadable_file_in_a_batch_is_skipped_listed_and_exits_1(tmp_path, mnfinder_dir):
    good = sorted((mnfinder_dir / "images").glob("*.tif"))[:2]
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    result = _segment([good[0], bad, good[1], "--out", tmp_path / "out"])
    assert result.exit_code == 1
    assert "failed: " in result.output and "broken.tif: cannot be read as an image" in result.output
    assert "1 of 3 image(s) could not be segmented; the other 2 were written" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{p.stem}_labels.tif" for p in good
    )
    assert "Traceback" not in result.output


def test_the_python_api_reports_what_failed_and_what_was_done(tmp_path, mnfinder_dir, model):
    good = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(cs.errors.SomeInputsFailed) as caught:
        cs.segment_files([bad, good], tmp_path / "out", model=model, progress=False)
    assert [r.image for r in caught.value.results] == [good]
    assert [path for path, _ in caught.value.failures] == [bad]


def test_an_output_that_is_a_file_is_refused_before_any_work(tmp_path, mnfinder_dir):
    good = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    (tmp_path / "out").write_text("my notes")
    result = _segment([good, "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "is a file; give a folder" in result.output
    assert (tmp_path / "out").read_text() == "my notes"


def test_a_folder_given_as_an_image_says_so(tmp_path):
    (tmp_path / "plate1").mkdir()
    result = _segment([tmp_path / "plate1", "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "plate1 is a folder; give the images in it" in result.output


def test_channels_last_images_with_many_channels_keep_their_shape(tmp_path):
    from cellseg_hcs.io.images import read_image, select_channel

    rng = np.random.default_rng(0)
    planes = rng.integers(0, 4000, (5, 64, 80)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "yxc.tif", np.moveaxis(planes, 0, -1))  # no axes stored
    image = read_image(tmp_path / "yxc.tif")
    np.testing.assert_array_equal(select_channel(image, 3), planes[3])


def test_hyperstack_axes_are_read_from_the_file(tmp_path):
    from cellseg_hcs.io.images import read_image, select_channel

    rng = np.random.default_rng(1)
    stack = rng.integers(0, 4000, (2, 1, 3, 40, 50)).astype(np.uint16)  # T Z C Y X
    tifffile.imwrite(tmp_path / "tzcyx.tif", stack, imagej=True, metadata={"axes": "TZCYX"})
    np.testing.assert_array_equal(
        select_channel(read_image(tmp_path / "tzcyx.tif"), 2), stack[0, 0, 2]
    )


def test_a_z_stack_is_refused_in_one_sentence(tmp_path):
    stack = np.zeros((7, 40, 50), np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    result = _segment([tmp_path / "z.tif", "--out", tmp_path / "out"])
    assert result.exit_code == 2
    assert "a stack of 7 Z planes; segmentation is 2-D" in result.output


def test_images_whose_nuclei_are_far_from_the_model_size_are_resampled_and_said(
    tmp_path, real_image, model
):
    from skimage.transform import rescale

    large = rescale(real_image.astype(np.float32), 2.5, order=1, preserve_range=True)
    tifffile.imwrite(tmp_path / "native.tif", real_image)
    tifffile.imwrite(tmp_path / "large.tif", large.astype(np.uint16))
    result = _segment([tmp_path / "native.tif", tmp_path / "large.tif", "--out", tmp_path / "o"])
    assert result.exit_code == 0, result.output
    assert "1 image(s) had objects far from the model's size" in result.output
    assert "large.tif (" in result.output and "native.tif" not in result.output.splitlines()[-1]
    for name, image in (("native", real_image), ("large", large.astype(np.uint16))):
        written = tifffile.imread(tmp_path / "o" / f"{name}_labels.tif")
        np.testing.assert_array_equal(written, model.segment(image))


def test_diameter_native_never_resamples_and_a_bad_diameter_is_one_sentence(tmp_path, real_image):
    from skimage.transform import rescale

    large = rescale(real_image.astype(np.float32), 2.5, order=1, preserve_range=True)
    tifffile.imwrite(tmp_path / "large.tif", large.astype(np.uint16))
    results = cs.segment_files(
        [tmp_path / "large.tif"], tmp_path / "o", diameter="native", progress=False
    )
    assert results[0].scale == 1.0 and results[0].diameter is None
    results = cs.segment_files([tmp_path / "large.tif"], tmp_path / "a", progress=False)
    assert results[0].scale < 0.6 and results[0].diameter > 50
    bad = _segment([tmp_path / "large.tif", "--out", tmp_path / "b", "--diameter", "big"])
    assert bad.exit_code == 2
    assert "diameter must be a number of pixels, 'auto' or 'native', not 'big'" in bad.output


@pytest.fixture(scope="module")
def large_image(real_image):
    from skimage.transform import rescale

    return rescale(real_image.astype(np.float32), 2.5, order=1, preserve_range=True).astype(
        np.uint16
    )


def test_results_come_back_in_input_order_when_the_first_image_is_resampled(
    tmp_path, real_image, large_image
):
    tifffile.imwrite(tmp_path / "a_large.tif", large_image)
    tifffile.imwrite(tmp_path / "b_native.tif", real_image)
    tifffile.imwrite(tmp_path / "c_large.tif", large_image)
    inputs = [tmp_path / name for name in ("a_large.tif", "b_native.tif", "c_large.tif")]
    results = cs.segment_files(inputs, tmp_path / "o", progress=False)
    assert [r.image for r in results] == inputs
    assert [r.scale < 1 for r in results] == [True, False, True]


def test_a_failed_second_pass_keeps_the_first_pass_labels(
    tmp_path, large_image, model, monkeypatch, caplog
):
    from cellseg_hcs.field import pipeline as pipeline_module

    original = pipeline_module.predict_at_scale

    def out_of_memory_when_resampling(runtime, field, scale):
        if scale != 1.0:
            raise MemoryError("no room for the resampled image")
        return original(runtime, field, scale)

    monkeypatch.setattr(pipeline_module, "predict_at_scale", out_of_memory_when_resampling)
    tifffile.imwrite(tmp_path / "large.tif", large_image)
    results = cs.segment_files([tmp_path / "large.tif"], tmp_path / "o", progress=False)
    assert results[0].scale == 1.0 and results[0].diameter > 50
    written = tifffile.imread(tmp_path / "o" / "large_labels.tif")
    np.testing.assert_array_equal(written, model.segment(large_image, diameter=None))
    assert "running it again at" in caplog.text and "no room" in caplog.text


def test_a_model_copy_with_its_own_splitting_is_used_by_the_command(tmp_path, mnfinder_dir, model):
    """Touching nuclei merged? Save a copy of the model that splits more readily.

    The copy's post-processing travels in its file, so ``--model`` gives it to ``segment``
    (and to ``run`` and the CellProfiler module, which read the same file).
    """
    copy = cs.load_model("nuclei")
    copy.info.postprocess["peak_height"] = 0.2  # the shipped model: 0.3
    copy.info.postprocess["merge_height"] = 0  # the shipped model joins alike parts: 0.5
    copy.save(tmp_path / "split_more.safetensors")
    saved = cs.load_model(tmp_path / "split_more.safetensors").info.postprocess
    assert saved["peak_height"] == 0.2 and saved["merge_height"] == 0
    images = sorted((mnfinder_dir / "images").glob("*.tif"))
    counts = {}
    for name in ("nuclei", tmp_path / "split_more.safetensors"):
        out = tmp_path / f"out_{len(counts)}"
        result = _segment([*images, "--out", out, "--model", name, "--diameter", "native"])
        assert result.exit_code == 0, result.output
        counts[str(name)] = sum(
            int(tifffile.imread(out / f"{i.stem}_labels.tif").max()) for i in images
        )
    shipped, split_more = counts.values()
    assert split_more > shipped


def test_an_image_with_nan_pixels_is_refused_in_one_sentence(tmp_path, real_image):
    pixels = real_image.astype(np.float32)
    pixels[10, 10] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", pixels)
    result = _segment([tmp_path / "nan.tif", "--out", tmp_path / "o", "--no-progress"])
    assert result.exit_code != 0
    assert "nan.tif has NaN or infinite pixels." in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_a_blank_image_is_segmented_and_noted_in_the_summary(tmp_path):
    tifffile.imwrite(tmp_path / "blank.tif", np.zeros((64, 64), np.uint16))
    result = _segment([tmp_path / "blank.tif", "--out", tmp_path / "o", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "note: blank.tif: the image is blank (every pixel is 0)." in result.output
    assert tifffile.imread(tmp_path / "o" / "blank_labels.tif").max() == 0


def test_no_progress_and_verbose_after_the_command(tmp_path, mnfinder_dir):
    image = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    result = _segment([image, "--out", tmp_path / "o", "--no-progress", "-v"])
    assert result.exit_code == 0, result.output
    assert "segmenting" not in result.output  # no bar
