"""The QC page of a plate run: one self-contained HTML file.

Why plotly: its charts are interactive with no code of ours (hovering a well shows its
numbers, a menu switches the plate map's colouring, zoom and PNG export come free), its
offline bundle (plotly.js) is shipped inside the Python package, so the page opens anywhere
with no network, and the figures are built in Python from the same tables users read.
matplotlib's SVG would be smaller but static; hover on 384 wells is what a screener uses
the map for.

Everything the page shows comes inline: plotly.js (4.8 MB, carried gzip-compressed and
base64-encoded, 1.9 MB, and inflated by the browser's ``DecompressionStream``: that halves a
384-well page), our style and script (:mod:`cellseg_hcs.report.assets`), the figures as
JSON, and the field pictures as ``data:`` URIs (WebP images, PNG outlines). It references no
other file and no URL.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import logging
import math
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..io.atomic import write_atomic_bytes
from . import figures
from .assets import SCRIPT, STYLE
from .gallery import gallery_section
from .run_folder import FINISHED, RunFolder, outliers, read_run

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"


def write_report(
    run_dir: str | Path, out: str | Path | None = None, features: tuple[str, ...] | list[str] = ()
) -> Path:
    """Write the QC page of a plate run: one HTML file that needs nothing else to open.

    Parameters
    ----------
    run_dir:
        The ``--out`` folder of a plate run (``run.json``, ``images.parquet``, ``features/``).
    out:
        The page to write; ``run_dir/report.html`` by default.
    features:
        Per-object feature columns whose per-well median the plate map can also show
        (``Nuclei_AreaShape_Area``); their distributions are drawn too.

    Returns
    -------
    The path of the page.

    Examples
    --------
    >>> write_report("results/", features=["Nuclei_AreaShape_Area"])  # doctest: +SKIP
    PosixPath('results/report.html')
    """
    run = read_run(run_dir)
    features = list(dict.fromkeys(features))
    run.check_features(features)
    target = Path(out) if out is not None else run.path / REPORT_NAME
    page = _page(run, features)
    write_atomic_bytes(target, page.encode("utf-8"))
    log.info("wrote the QC report %s (%.1f MB)", target, len(page) / 1e6)
    return target


# ----------------------------------------------------------------------------- the page


def _page(run: RunFolder, chosen: list[str]) -> str:
    shown = list(dict.fromkeys([*run.key_features(), *chosen]))
    values = run.feature_values(shown)
    medians = (
        values.groupby("Metadata_Well")[chosen].median().add_prefix("median ")
        if chosen and len(values)
        else None
    )
    if run.micronucleated is not None:
        share = run.micronucleated[0].rename(_micronucleated_title(run)).to_frame()
        medians = share if medians is None else medians.join(share, how="outer")
    wells = run.wells(medians)
    layers = [
        figures.MapLayer(c, f"{c.removeprefix('Count_')} per well") for c in run.count_columns
    ]
    if run.micronucleated is not None:
        layers.append(figures.MapLayer(_micronucleated_title(run), _micronucleated_title(run)))
    layers += [figures.MapLayer(f"median {c}", f"median {c}") for c in chosen]
    plotted: dict[str, Any] = {
        "plate-map": figures.plate_map(run.layout, wells, layers, run.count_columns)
    }
    if run.stage_columns:
        plotted["stage-split"] = figures.stage_split(run.images, run.stage_columns)
    distributions = []
    for index, column in enumerate(shown):
        figure, _ = figures.feature_distribution(values, column, run.layout.wells)
        plotted[f"feature-{index}"] = figure
        distributions.append(f"feature-{index}")

    title = f"QC report: plate {run.plate_name}"
    body = "\n".join(
        [
            _header(run, title),
            _nav(run),
            "<main>",
            _summary(run),
            _plate_section(run, wells),
            _problems(run),
            gallery_section(run),
            _distributions_section(distributions, values),
            _run_section(run),
            "</main>",
            _lightbox(),
        ]
    )
    figures_json = "{" + ",".join(f'"{k}":{v.to_json()}' for k, v in plotted.items()) + "}"
    figures_json = figures_json.replace("</", "<\\/")  # JSON's own escape: no early </script>
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><link rel='icon' href='data:,'>"
        f"<style>{STYLE}</style>"
        f"</head>\n<body>\n{body}\n"
        f"<script type='application/octet-stream' id='plotly-gzip'>{_plotly_gzip()}</script>\n"
        "<script type='application/json' id='report-figures'>"
        f"{figures_json}</script>\n"
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


@functools.cache
def _plotly_gzip() -> str:
    """plotly.js (the bundle in the plotly package), gzip-compressed and base64-encoded:
    1.9 MB instead of 4.8; the page inflates it with the browser's DecompressionStream."""
    from plotly.offline import get_plotlyjs

    packed = gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")


def _header(run: RunFolder, title: str) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<header><h1>{escape(title)}</h1><div class='sub'>run folder {escape(str(run.path))}"
        f" &middot; plate {escape(str(run.plate_path))} &middot; written {made} by "
        f"cellseg-hcs {escape(__version__)}</div></header>"
    )


def _nav(run: RunFolder) -> str:
    links = [("summary", "Summary"), ("plate", "Plate map")]
    if (run.images["status"] != "ok").any():
        links.append(("problems", "Failed and empty fields"))
    links += [("fields", "Fields"), ("features", "Features"), ("run", "Run and settings")]
    return "<nav>" + "".join(f"<a href='#{k}'>{escape(v)}</a>" for k, v in links) + "</nav>"


def _card(label: str, value: str, detail: str = "", kind: str = "") -> str:
    return (
        f"<div class='card {kind}'><div class='label'>{escape(label)}</div>"
        f"<div class='value'>{escape(value)}</div><div class='detail'>{escape(detail)}</div></div>"
    )


def _summary(run: RunFolder) -> str:
    images = run.images
    status = images["status"].value_counts()
    result = run.manifest.get("result") or {}
    fields = len(images)
    failed, empty = int(status.get("failed", 0)), int(status.get("empty", 0))
    cards = [
        _card(
            "Fields",
            f"{fields:,}",
            f"{int(status.get('ok', 0)):,} ok in {images['Metadata_Well'].nunique():,} wells",
        ),
        _card(
            "Failed fields", f"{failed:,}", "see below" if failed else "", "bad" if failed else ""
        ),
        _card(
            "Empty fields",
            f"{empty:,}",
            "no objects found" if empty else "",
            "warn" if empty else "",
        ),
    ]
    finished = images[images["status"].isin(FINISHED)]
    for column in run.count_columns:
        per_field = finished[column].mean() if len(finished) else 0
        cards.append(
            _card(
                column.removeprefix("Count_"),
                f"{int(finished[column].sum()):,}",
                f"{per_field:,.1f} per finished field",
            )
        )
    cards.append(_card(*_throughput(run, result)))
    model = run.manifest.get("model") or {}
    name = Path(str(model.get("path", "?"))).name.removesuffix(".safetensors")
    cards.append(_card("Model", name, f"hash {model.get('hash', '?')}"))
    cards.append(_card("Backend", *_backend(run)))
    if run.micronucleated is not None:
        per_well, plate = run.micronucleated
        cards.append(
            _card(
                _micronucleated_title(run),
                f"{plate:.1f}%",
                f"wells {per_well.min():.1f}-{per_well.max():.1f}%",
            )
        )
    return (
        "<section id='summary'><h2>Summary</h2>"
        f"<div class='cards'>{''.join(cards)}</div>{_run_state(run, result)}</section>"
    )


def _micronucleated_title(run: RunFolder) -> str:
    """The micronucleus assay's readout as the page names it: ``Nuclei with micronuclei (%)``."""
    return f"{run.object_sets[0]} with micronuclei (%)"


def _throughput(run: RunFolder, result: dict[str, Any]) -> tuple[str, str, str]:
    seconds = float(result.get("seconds") or 0)
    computed = int(result.get("computed") or 0)
    skipped = int(result.get("skipped") or 0)
    done = f"{computed:,} computed, {skipped:,} already done"
    if not result:
        return ("Throughput", "-", "the run has not ended (run.json has no result)")
    if not computed or seconds <= 0:
        return ("Throughput", "-", f"nothing computed in the last invocation ({done})")
    return ("Throughput", f"{computed / seconds * 60:,.1f} fields/min", f"{done}; {seconds:,.1f} s")


def _backend(run: RunFolder) -> tuple[str, str]:
    backend = run.manifest.get("backend") or {}
    used = run.images.loc[run.images["backend"].astype(str) != "", "backend"].value_counts()
    name = ", ".join(used.index) if len(used) else str(backend.get("name", "?"))
    device = run.parameters.get("device") or (run.parameters.get("settings") or {}).get("device")
    asked = backend.get("asked", "auto")
    return name, f"asked: {asked}; device: {device or 'chosen by the backend'}"


def _run_state(run: RunFolder, result: dict[str, Any]) -> str:
    started, updated = run.manifest.get("started", "?"), run.manifest.get("updated", "?")
    state = run.manifest.get("status", "?")
    when = f"started {started}, " + (f"ended {updated}" if result else f"last update {updated}")
    note = ""
    if state != "complete":
        note = (
            "<div class='note'>run.json says this run has not completed (status "
            f"{escape(str(state))}): the page shows the fields finished so far.</div>"
        )
    return f"<p class='hint'>{escape(when)}.</p>{note}"


def _plate_section(run: RunFolder, wells: pd.DataFrame) -> str:
    notes = []
    if run.plate is None:
        notes.append(
            "<div class='note'>The plate could not be opened "
            f"({escape(run.plate_note or '')}); the map is laid out from the run's well "
            "names.</div>"
        )
    for column in run.count_columns:
        odd = outliers(wells[column])
        if len(odd):
            listed = ", ".join(
                f"{w} ({wells.loc[w, column]:,.0f}, z={z:+.1f})" for w, z in odd.items()
            )
            notes.append(
                f"<div class='note'>Wells with unusual {escape(column.removeprefix('Count_'))} "
                f"counts (more than 3 robust SD from the plate's median): {escape(listed)}</div>"
            )
    rows, columns = len(run.layout.rows), len(run.layout.columns)
    return (
        "<section id='plate'><h2>Plate map</h2>"
        f"<p class='hint'>{rows} rows &times; {columns} columns as the plate metadata lays them "
        "out; grey: not in this run. Hover a well for its numbers, click it for its field; "
        "the menu switches what colours the wells.</p>"
        f"{''.join(notes)}<div id='plate-map' class='figure'></div></section>"
    )


def _problems(run: RunFolder) -> str:
    bad = run.images[run.images["status"] != "ok"]
    if not len(bad):
        return ""
    bad = bad.assign(later=bad["status"] != "failed")  # failed fields first
    bad = bad.sort_values(["later", "Metadata_Well", "Metadata_Site"], kind="stable")
    rows = "".join(
        f"<tr><td>{escape(str(r.Metadata_Well))}</td><td class='num'>{int(r.Metadata_Site)}</td>"
        f"<td>{escape(str(r.Metadata_FieldPath))}</td>"
        f"<td class='status-{escape(str(r.status))}'>{escape(str(r.status))}</td>"
        f"<td class='error'>{escape(str(r.error))}</td></tr>"
        for r in bad.itertuples()
    )
    return (
        "<section id='problems'><h2>Failed and empty fields</h2>"
        "<p class='hint'>A failed field has no labels or features; running the same command "
        "again tries it again. An empty field was segmented and has no objects.</p>"
        "<table><tr><th>Well</th><th>Site</th><th>Field</th><th>Status</th><th>Error</th></tr>"
        f"{rows}</table></section>"
    )


def _distributions_section(distributions: list[str], values: pd.DataFrame) -> str:
    if not distributions:
        return (
            "<section id='features'><h2>Features</h2><p class='hint'>No per-object features "
            "to draw.</p></section>"
        )
    parts = [f"<div id='{element}' class='figure'></div>" for element in distributions]
    wells = values["Metadata_Well"].nunique()
    how = (
        "every well is drawn beside the plate"
        if wells <= figures.FEW_WELLS
        else "the wells whose median is more than 3 robust SD from the plate's are drawn beside "
        "the plate and marked red"
    )
    return (
        "<section id='features'><h2>Features</h2>"
        f"<p class='hint'>{len(values):,} objects in {wells:,} wells; {how}.</p>"
        f"{''.join(parts)}</section>"
    )


def _run_section(run: RunFolder) -> str:
    parameters = run.parameters
    settings = parameters.pop("settings", {}) or {}
    if settings.get("flips") is None and parameters.get("flips") is not None:
        settings["flips"] = f"{parameters['flips']} (the model's own)"
    wells = parameters.get("wells")
    if isinstance(wells, list) and len(wells) > 12:
        parameters["wells"] = f"{len(wells)} wells: {', '.join(wells[:6])} ... {wells[-1]}"
    model = run.manifest.get("model") or {}
    backend = run.manifest.get("backend") or {}
    versions = {
        "cellseg-hcs": run.manifest.get("cellseg_hcs", "?"),
        "python": run.manifest.get("python", "?"),
    }
    versions.update(run.manifest.get("dependencies") or {})
    chart = (
        "<div><h3>Time per stage</h3><div id='stage-split'></div></div>"
        if run.stage_columns
        else ""
    )
    return (
        "<section id='run'><h2>Run and settings</h2><div class='twocol'>"
        f"{chart}<div><h3>Model and backend</h3>"
        + _table(
            {
                "model": model.get("path"),
                "hash": model.get("hash"),
                "architecture": model.get("architecture"),
                "backend": backend.get("name"),
                "why this backend": backend.get("reason"),
            }
        )
        + "</div></div><div class='twocol'><div><h3>Field settings</h3>"
        + _table(settings)
        + "</div><div><h3>Run parameters</h3>"
        + _table(parameters)
        + "</div></div><details><summary>Versions</summary>"
        + _table(versions)
        + "</details></section>"
    )


def _table(values: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(_text(v))}</td></tr>" for k, v in values.items()
    )
    return f"<table>{rows}</table>"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _lightbox() -> str:
    return (
        "<div id='lightbox' class='lightbox' hidden role='dialog' aria-modal='true'>"
        "<div class='panel'><div class='bar'><span class='title' id='lb-title'></span>"
        "<label><input type='checkbox' class='outline-toggle' checked> outlines (O)</label>"
        "<button type='button' id='lb-prev' title='previous well'>&larr;</button>"
        "<button type='button' id='lb-next' title='next well'>&rarr;</button>"
        "<button type='button' id='lb-close' title='close (Esc)'>&times;</button></div>"
        "<div class='stack'><img id='lb-image' alt=''><img id='lb-outlines' class='outlines' "
        "alt=''></div><div class='caption' id='lb-caption'></div></div></div>"
    )
