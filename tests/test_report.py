"""The QC page of a plate run: written by every run, self-contained, and what a person sees.

Most tests share one real run: the demo plate (four mnfinder fields in two wells) through
the shipped ``nuclei`` model. The browser test opens the page in the system's Chromium
(``apt-get install chromium``); CI sets ``CELLSEG_HCS_REQUIRE_CHROMIUM`` so it never skips
there.
"""

from __future__ import annotations

import io
import json
import os
import re
import runpy
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from plate_helpers import make_plate, threshold_model

from cellseg_hcs.cli import main
from cellseg_hcs.errors import InputError
from cellseg_hcs.io.plate import open_plate, read_field, write_field_labels
from cellseg_hcs.io.tables import read_features
from cellseg_hcs.plate.run import run_plate
from cellseg_hcs.report import write_report
from cellseg_hcs.report.run_folder import outliers, read_run
from cellseg_hcs.report.thumbnails import OUTLINE_COLOURS, field_thumbnail

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        yield client


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, client):
    """The README's run: the demo plate through the shipped model; (plate, out, result)."""
    folder = tmp_path_factory.mktemp("demo")
    plate = folder / "demo.zarr"
    argv = sys.argv
    sys.argv = ["make_demo_plate.py", str(plate)]
    try:
        runpy.run_path(str(EXAMPLES / "make_demo_plate.py"), run_name="__main__")
    finally:
        sys.argv = argv
    result = run_plate(plate, folder / "out", model="nuclei", scheduler=client, progress=False)
    return plate, folder / "out", result


def _page(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _figures(page: str) -> dict:
    found = re.search(
        r"<script type='application/json' id='report-figures'>(.*?)</script>", page, re.S
    )
    return json.loads(found.group(1))


def _map_layers(page: str) -> dict[str, dict[str, float]]:
    """Each plate-map colouring as ``{title: {well: value}}``."""
    layers = {}
    for trace in _figures(page)["plate-map"]["data"]:
        if trace["type"] != "heatmap":
            continue
        wells = np.array(trace["customdata"]).ravel()
        values = np.array(trace["z"], dtype=float).ravel()
        layers[trace["name"]] = {w: v for w, v in zip(wells, values) if not np.isnan(v)}
    return layers


def _copy_run(out: Path, to: Path) -> Path:
    shutil.copytree(out, to)
    (to / "report.html").unlink(missing_ok=True)
    return to


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_sentence(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message


# ----------------------------------------------------------------------------- the page


def test_a_plate_run_writes_its_report_into_the_run_folder(demo_run):
    _, out, result = demo_run
    assert result.report == out / "report.html"
    assert result.report_error is None
    assert result.report.stat().st_size > 100_000


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.references: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") and value:
                self.references.append(value)


def test_the_report_references_nothing_outside_itself(demo_run):
    page = _page(demo_run[1] / "report.html")
    parser = _References()
    parser.feed(page)
    assert parser.references  # the field pictures at least
    for reference in parser.references:
        assert reference.startswith(("data:", "#")), reference[:80]
    assert not re.search(r"url\(\s*['\"]?(https?:|file:|//)", page)
    assert not re.search(r"@import", page)


def test_the_report_names_every_well_of_the_plate_in_map_and_fields(demo_run):
    plate_path, out, _ = demo_run
    page = _page(out / "report.html")
    plate = open_plate(plate_path)
    assert set(_map_layers(page)["Nuclei per well"]) == set(plate.wells) == {"B02", "B03"}
    tiles = set(re.findall(r"<figure class='tile[^']*' data-well='([^']+)'", page))
    assert tiles == set(plate.wells)


def test_the_plate_map_is_coloured_by_the_objects_of_each_well(demo_run):
    _, out, result = demo_run
    counts = result.images.groupby("Metadata_Well")["Count_Nuclei"].sum()
    assert _map_layers(_page(out / "report.html"))["Nuclei per well"] == counts.to_dict()


def test_a_chosen_feature_colours_the_plate_map_by_its_median_per_well(demo_run, tmp_path):
    _, out, _ = demo_run
    page = _page(write_report(out, tmp_path / "r.html", features=["Nuclei_AreaShape_Area"]))
    medians = read_features(out).groupby("Metadata_Well")["Nuclei_AreaShape_Area"].median()
    shown = _map_layers(page)["median Nuclei_AreaShape_Area"]
    assert shown == pytest.approx(medians.to_dict())


def test_the_report_command_writes_where_it_is_told(demo_run, tmp_path):
    result = _cli("report", demo_run[1], "--out", tmp_path / "qc.html")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "qc.html").is_file()
    assert str(tmp_path / "qc.html") in result.output


# ----------------------------------------------------------------------------- bad input


def test_a_folder_that_is_not_a_run_exits_2_with_one_sentence(tmp_path):
    (tmp_path / "something.txt").write_text("not a run")
    _one_sentence(_cli("report", tmp_path), str(tmp_path), "not a plate run folder")


def test_a_run_with_no_finished_field_gives_one_sentence(demo_run, tmp_path):
    run = _copy_run(demo_run[1], tmp_path / "run")
    images = pd.read_parquet(run / "images.parquet")
    images["status"] = "failed"
    images["error"] = "field B02_0 (B/02/0): the disk was unplugged"
    images.to_parquet(run / "images.parquet")
    _one_sentence(_cli("report", run), "none of the run's 4 field(s) has finished", "unplugged")
    assert not (run / "report.html").exists()


def test_an_unknown_feature_column_is_named_in_one_sentence(demo_run):
    result = _cli("report", demo_run[1], "--feature", "Nuclei_AreaShape_Areaa")
    _one_sentence(result, "Nuclei_AreaShape_Areaa", "did you mean Nuclei_AreaShape_Area")


def test_a_moved_plate_still_gives_a_report_with_a_note_instead_of_pictures(demo_run, tmp_path):
    run = _copy_run(demo_run[1], tmp_path / "run")
    manifest = json.loads((run / "run.json").read_text())
    manifest["plate"]["path"] = str(tmp_path / "moved.zarr")
    manifest["parameters"]["plate"] = str(tmp_path / "moved.zarr")
    (run / "run.json").write_text(json.dumps(manifest))
    page = _page(write_report(run))
    assert "No field pictures" in page and "moved.zarr" in page
    assert "data:image/webp" not in page
    assert set(_map_layers(page)["Nuclei per well"]) == {"B02", "B03"}


# ----------------------------------------------------------------------------- what runs add


def test_more_object_sets_become_map_colourings_and_distributions(demo_run, tmp_path):
    """Count_Cells in the images table and Cells_* columns in the features, as a run that
    grows cells will write them: each is reported without being named in the code."""
    run = _copy_run(demo_run[1], tmp_path / "run")
    images = pd.read_parquet(run / "images.parquet")
    images["Count_Cells"] = images["Count_Nuclei"]
    images.to_parquet(run / "images.parquet")
    for part in (run / "features").rglob("*.parquet"):
        table = pd.read_parquet(part)
        table["Cells_AreaShape_Area"] = table["Nuclei_AreaShape_Area"] * 4
        table.to_parquet(part)
    assert "Cells_AreaShape_Area" in read_run(run).key_features()
    page = _page(write_report(run))
    assert set(_map_layers(page)) == {"Nuclei per well", "Cells per well"}
    assert "<b>Cells_AreaShape_Area</b>" in json.dumps(_figures(page))


def test_a_run_with_micronuclei_shows_the_share_of_nuclei_with_one_per_well(demo_run, tmp_path):
    """The micronucleus assay's readout, as a model with micronuclei writes its columns:
    the share of nuclei with at least one micronucleus, per well on the map and overall."""
    run = _copy_run(demo_run[1], tmp_path / "run")
    for part in (run / "features").rglob("*.parquet"):
        table = pd.read_parquet(part)
        table["Nuclei_Children_Micronuclei_Count"] = (table["ObjectNumber"] % 3 == 0) * 2
        table.to_parquet(part)
    page = _page(write_report(run))
    nuclei = read_features(run)
    with_one = nuclei["Nuclei_Children_Micronuclei_Count"] > 0
    expected = (with_one.groupby(nuclei["Metadata_Well"]).mean() * 100).to_dict()
    assert _map_layers(page)["Nuclei with micronuclei (%)"] == pytest.approx(expected)
    assert f"{with_one.mean() * 100:.1f}%" in page
    assert "Nuclei with micronuclei" not in _page(demo_run[1] / "report.html")  # none found


def test_a_resumed_run_rewrites_its_report_with_the_whole_plate(tmp_path, client):
    make_plate(tmp_path / "plate.zarr", wells=("B02", "B03"), sites=1)
    model = threshold_model()
    first = run_plate(
        tmp_path / "plate.zarr", tmp_path / "out", model=model, scheduler=client,
        progress=False, features="minimal", wells=["B02"],
    )  # fmt: skip
    assert "data-well='B03'" not in _page(first.report)
    second = run_plate(
        tmp_path / "plate.zarr", tmp_path / "out", model=model, scheduler=client,
        progress=False, features="minimal",
    )  # fmt: skip
    page = _page(second.report)
    assert second.report == first.report
    assert "data-well='B03'" in page and "data-well='B02'" in page
    assert "1 computed, 1 already done" in page


# ----------------------------------------------------------------------------- pictures


def test_every_labelled_object_set_is_outlined_in_its_own_colour(tmp_path):
    from PIL import Image

    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1, shape=(128, 128))
    plate = open_plate(tmp_path / "plate.zarr")
    field = plate.fields[0]
    image = read_field(plate.path, field)
    nuclei = np.zeros((128, 128), np.uint16)
    nuclei[20:50, 20:50] = 1
    micronuclei = np.zeros_like(nuclei)
    micronuclei[80:90, 80:90] = 1
    write_field_labels(plate.path, field, "Nuclei", nuclei, image)
    write_field_labels(plate.path, field, "Micronuclei", micronuclei, image)

    thumbnail = field_thumbnail(plate.path, field.path, "B02", 0, "DNA", size=128)
    assert set(thumbnail.object_sets) == {"Nuclei", "Micronuclei"}
    outlines = Image.open(io.BytesIO(_decoded(thumbnail.outlines))).convert("RGBA")
    pixels = np.asarray(outlines)
    for name, (top, left) in (("Nuclei", (20, 20)), ("Micronuclei", (80, 80))):
        colour = tuple(int(OUTLINE_COLOURS[name][i : i + 2], 16) for i in (1, 3, 5))
        assert tuple(pixels[top, left + 5, :3]) == colour  # on the object's edge
        assert pixels[top + 5, left + 5, 3] == 0  # inside: transparent


def test_the_smallest_pyramid_level_that_is_big_enough_is_read(tmp_path):
    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1, shape=(128, 128))
    field = open_plate(tmp_path / "plate.zarr").fields[0]
    small = field_thumbnail(tmp_path / "plate.zarr", field.path, "B02", 0, "DNA", size=64)
    large = field_thumbnail(tmp_path / "plate.zarr", field.path, "B02", 0, "DNA", size=100)
    assert (small.shape, large.shape) == ((64, 64), (100, 100))
    assert small.level != large.level  # the half-size level for 64, full size for 100


def test_a_field_without_labels_gets_its_picture_and_a_note(tmp_path):
    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1)
    field = open_plate(tmp_path / "plate.zarr").fields[0]
    thumbnail = field_thumbnail(tmp_path / "plate.zarr", field.path, "B02", 0, "DNA", size=64)
    assert thumbnail.image.startswith("data:image/webp;base64,")
    assert thumbnail.outlines is None and "no labels" in thumbnail.note


def test_wells_far_from_the_plate_median_are_outliers():
    values = pd.Series([100, 104, 97, 101, 99, 103, 98, 102, 100, 300, 10.0])
    values.index = [f"B{i:02d}" for i in range(1, 12)]
    assert list(outliers(values).index) == ["B10", "B11"]
    assert outliers(values.iloc[:5]).empty  # too few wells to call any


def _decoded(uri: str) -> bytes:
    import base64

    return base64.b64decode(uri.partition(",")[2])


# ----------------------------------------------------------------------------- in a browser


def _chromium() -> str:
    required = os.environ.get("CELLSEG_HCS_REQUIRE_CHROMIUM")
    path = os.environ.get("CELLSEG_HCS_CHROMIUM") or shutil.which("chromium")
    path = path or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
        why = "playwright is not installed (pip install -e '.[dev]')"
    else:
        why = "no Chromium here (apt-get install chromium, or set CELLSEG_HCS_CHROMIUM)"
    if not path:
        (pytest.fail if required else pytest.skip)(f"the report's browser test needs {why}")
    return path


def test_the_report_renders_in_chromium_with_every_well_and_no_errors(demo_run, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    report = demo_run[1] / "report.html"
    arguments = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=arguments,
            viewport={"width": 1300, "height": 900},
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri())
            page.wait_for_function(
                "document.querySelectorAll('#plate-map .main-svg').length > 0", timeout=30_000
            )
            wells = page.evaluate("document.getElementById('plate-map').data[0].customdata.flat()")
            drawn = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            page.click(".tile[data-well='B03'] button")
            title = page.inner_text("#lb-title")
            big = page.get_attribute("#lb-image", "src")
        finally:
            browser.close()
    assert problems == []
    assert requests == [report.as_uri()]  # nothing fetched but the page itself
    assert sorted(wells) == ["B02", "B03"]
    assert drawn >= 3  # plate map, time per stage, a feature's distribution
    assert title.startswith("B03") and big.startswith("data:image/webp")
    pixels = np.asarray(Image.open(tmp_path / "report.png").convert("L"), dtype=float)
    assert pixels.shape[0] > 1500 and pixels.std() > 20  # a full page, not a blank one
    keep = os.environ.get("CELLSEG_HCS_REPORT_SCREENSHOT")
    if keep:  # to look at it
        shutil.copy(tmp_path / "report.png", keep)


def test_the_library_and_the_command_agree_on_a_bad_folder(tmp_path):
    with pytest.raises(InputError, match="not a plate run folder"):
        write_report(tmp_path)
