"""The report's Fields section: one picture per well, each opening in the page's viewer.

The field shown is the well's first with objects (else its first empty one); a well whose
fields all failed, or a plate that cannot be read, gets a tile saying so.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from html import escape

import pandas as pd

from .run_folder import RunFolder
from .thumbnails import Thumbnail, field_thumbnail


def thumbnail_size(wells: int) -> int:
    """The long side of each field's picture: smaller on bigger plates, so the page stays a
    few MB (about 10 kB a well at 384 px)."""
    return 512 if wells <= 96 else 384 if wells <= 384 else 256


def gallery_section(run: RunFolder) -> str:
    """The Fields section: one field per well with its outlines, each opening larger."""
    images = run.images
    in_run = set(images["Metadata_Well"])
    wells = [w for w in run.layout.wells if w in in_run]
    size = thumbnail_size(len(wells))
    channel = (run.parameters.get("channels") or [None])[0]
    shown = {well: _field_to_show(images[images["Metadata_Well"] == well]) for well in wells}

    def picture(well: str) -> Thumbnail | None:
        field = shown[well]
        if field is None or run.plate is None:
            return None
        path, site = str(field["Metadata_FieldPath"]), int(field["Metadata_Site"])
        return field_thumbnail(run.plate_path, path, well, site, channel, size)

    # Reading and encoding release the GIL: a few threads make a 384-well page ~2x faster.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pictures = list(pool.map(picture, wells))
    tiles, colours, notes = [], {}, set()
    for well, thumbnail in zip(wells, pictures):
        fields = images[images["Metadata_Well"] == well].sort_values("Metadata_Site")
        if thumbnail is None:
            tiles.append(_missing_tile(well, fields))
            continue
        colours.update(thumbnail.object_sets)
        if thumbnail.note:
            notes.add(thumbnail.note)
        tiles.append(_tile(thumbnail, shown[well], fields, run.count_columns))
    legend = "".join(
        f"<span><span class='swatch' style='background:{c}'></span>{escape(n)}</span>"
        for n, c in colours.items()
    )
    top = []
    if run.plate is None:
        top.append(
            f"<div class='note'>No field pictures: the plate at {escape(str(run.plate_path))} "
            f"could not be read ({escape(run.plate_note or '')}).</div>"
        )
    for note in sorted(notes)[:5]:
        top.append(f"<div class='note'>Some fields: {escape(note)}.</div>")
    toggle = "<label><input type='checkbox' class='outline-toggle' checked> outlines (O)</label>"
    return (
        "<section id='fields'><h2>Fields</h2>"
        f"<p class='hint'>One field per well (the first with objects), channel "
        f"{escape(str(channel))}, contrast stretched per field (1st-99.8th percentile). "
        f"Click a field to enlarge it; arrows step through wells. {toggle}"
        f"<span class='legend'>{legend}</span></p>{''.join(top)}"
        f"<div class='gallery{' small' if len(wells) > 96 else ''}'>{''.join(tiles)}</div>"
        "</section>"
    )


def _field_to_show(fields: pd.DataFrame) -> pd.Series | None:
    fields = fields.sort_values("Metadata_Site")
    for status in ("ok", "empty"):
        chosen = fields[fields["status"] == status]
        if len(chosen):
            return chosen.iloc[0]
    return None


def _counts(row: pd.Series, count_columns: list[str]) -> str:
    return ", ".join(f"{int(row[c]):,} {c.removeprefix('Count_')}" for c in count_columns)


def _tile(thumbnail: Thumbnail, row: pd.Series, fields: pd.DataFrame, counts: list[str]) -> str:
    well, site = thumbnail.well, thumbnail.site
    failed = int((fields["status"] == "failed").sum())
    caption = f"site {site}: {_counts(row, counts)}"
    extra = f"; {failed} of {len(fields)} fields failed" if failed else ""
    kind = "failed" if failed else "empty" if row["status"] == "empty" else ""
    title = f"{well}, site {site} ({row['Metadata_FieldPath']})"
    detail = f"{caption}{extra}" + (f"; {thumbnail.note}" if thumbnail.note else "")
    if thumbnail.image is None:
        picture = f"<div class='missing'>{escape(thumbnail.note)}</div>"
    else:
        h, w = thumbnail.shape
        size = f"width='{w}' height='{h}'"
        layers = f"<img class='image' alt='{escape(well)}' {size} src='{thumbnail.image}'>"
        if thumbnail.outlines:
            layers += f"<img class='outlines' alt='' {size} src='{thumbnail.outlines}'>"
        picture = (
            f"<button type='button' title='enlarge {escape(well)}'>"
            f"<span class='stack'>{layers}</span></button>"
        )
    return (
        f"<figure class='tile {kind}' data-well='{escape(well)}' data-title='{escape(title)}' "
        f"data-caption='{escape(detail)}'>{picture}"
        f"<figcaption><b>{escape(well)}</b> {escape(caption)}{escape(extra)}</figcaption></figure>"
    )


def _missing_tile(well: str, fields: pd.DataFrame) -> str:
    failed = int((fields["status"] == "failed").sum())
    if failed == len(fields):
        why, kind = f"all {failed} field(s) failed", "failed"
    else:
        why, kind = "plate not readable", ""
    return (
        f"<figure class='tile {kind}' data-well='{escape(well)}' data-title='{escape(well)}' "
        f"data-caption='{escape(why)}'><div class='missing'>"
        f"{escape(why)}</div><figcaption><b>{escape(well)}</b> no picture</figcaption></figure>"
    )
