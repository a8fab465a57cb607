"""`cellseg-hcs convert`: a folder of TIFFs named by well and site becomes an NGFF plate."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cellseg_hcs.cli import main
from cellseg_hcs.io.plate import open_plate, read_field


def _export(folder, wells=("B03", "C12"), sites=(1, 2), channels=("1", "2")):
    """A MetaXpress-style export: Plate1_B03_s1_w1.tif ... with known pixels."""
    folder.mkdir()
    pixels = {}
    for w, well in enumerate(wells):
        for site in sites:
            for c, channel in enumerate(channels):
                image = np.full((64, 80), 100 * w + 10 * site + c, np.uint16)
                image[5, 7] = 999
                tifffile.imwrite(folder / f"Plate1_{well}_s{site}_w{channel}.tif", image)
                pixels[(well, site, c)] = image
    return pixels


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_convert_writes_a_plate_with_every_well_site_and_channel(tmp_path, ngff):
    pixels = _export(tmp_path / "export")
    result = CliRunner().invoke(
        main,
        [
            "convert",
            str(tmp_path / "export"),
            "--out",
            str(tmp_path / "plate.zarr"),
            "--channel-names",
            "DNA,Actin",
            "--ngff",
            ngff,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 well(s), 4 field(s)" in result.output

    plate = open_plate(tmp_path / "plate.zarr")
    assert plate.ngff_version == ngff
    assert plate.wells == ["B03", "C12"]
    assert plate.channel_names == ("DNA", "Actin")
    assert [(f.well, f.site) for f in plate.fields] == [
        ("B03", 0),
        ("B03", 1),
        ("C12", 0),
        ("C12", 1),
    ]
    field = next(f for f in plate.fields if (f.well, f.site) == ("C12", 1))
    image = read_field(plate.path, field)
    np.testing.assert_array_equal(image.channels["Actin"], pixels[("C12", 2, 1)])
    np.testing.assert_array_equal(image.channels["DNA"], pixels[("C12", 2, 0)])


def test_convert_takes_a_file_name_pattern_of_its_own(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for well in ("A01", "A02"):
        tifffile.imwrite(folder / f"scan-{well}-field3.tif", np.ones((32, 32), np.uint8))
    result = CliRunner().invoke(
        main,
        [
            "convert",
            str(folder),
            "--out",
            str(tmp_path / "plate.zarr"),
            "--pattern",
            r"scan-(?P<well>[A-P]\d\d)-field(?P<site>\d+)",
            "--channel-names",
            "DNA",
        ],
    )
    assert result.exit_code == 0, result.output
    assert open_plate(tmp_path / "plate.zarr").wells == ["A01", "A02"]


def test_a_field_missing_a_channel_stops_the_conversion_with_one_sentence(tmp_path):
    _export(tmp_path / "export")
    (tmp_path / "export" / "Plate1_C12_s2_w2.tif").unlink()
    result = CliRunner().invoke(
        main, ["convert", str(tmp_path / "export"), "--out", str(tmp_path / "plate.zarr")]
    )
    assert result.exit_code == 2
    assert "C12 site 2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "plate.zarr").exists()


def test_convert_refuses_to_replace_a_plate_without_overwrite(tmp_path):
    _export(tmp_path / "export")
    arguments = ["convert", str(tmp_path / "export"), "--out", str(tmp_path / "plate.zarr")]
    assert CliRunner().invoke(main, arguments).exit_code == 0
    again = CliRunner().invoke(main, arguments)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(main, [*arguments, "--overwrite"]).exit_code == 0


def test_a_1536_well_plate_with_two_letter_rows_is_written_and_read_back(tmp_path):
    from cellseg_hcs.io.convert import write_plate
    from cellseg_hcs.io.plate import open_plate

    image = np.zeros((32, 32), np.uint16)
    write_plate(tmp_path / "p.zarr", {("AF48", 0): image, ("B03", 0): image}, channel_names=["DNA"])
    plate = open_plate(tmp_path / "p.zarr")
    assert sorted(f.path for f in plate.fields) == ["AF/48/0", "B/03/0"]
    assert plate.wells == ["AF48", "B03"]


def test_an_unreadable_tiff_in_the_folder_is_named_in_one_sentence(tmp_path):
    _export(tmp_path / "export")
    broken = tmp_path / "export" / "Plate1_C12_s2_w2.tif"
    broken.write_bytes(broken.read_bytes()[:200])  # cut short, as a failed copy leaves it
    result = CliRunner().invoke(
        main, ["convert", str(tmp_path / "export"), "--out", str(tmp_path / "plate.zarr")]
    )
    assert result.exit_code == 2
    assert "Plate1_C12_s2_w2.tif: cannot be read as a TIFF image" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "plate.zarr").exists()
