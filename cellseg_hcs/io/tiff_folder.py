"""A folder of TIFFs named by well and site, as microscopes export them, read with bioio.

Which part of a file name is the well, the site and the channel is a regular expression with
named groups: ``well`` (or ``row`` and ``column``), ``site`` and, when each channel is its own
file, ``channel``. The common exports have names in :data:`FILENAME_PATTERNS`; any other
layout is one ``--pattern`` away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, SettingError
from .plate import parse_well

FILENAME_PATTERNS: dict[str, str] = {
    # MetaXpress / ImageXpress: Plate1_B03_s2_w1<uuid>.tif (the _w<n> part is optional)
    "metaxpress": r"(?:^|_)(?P<well>[A-Za-z]{1,2}\d{1,2})_s(?P<site>\d+)(?:_w(?P<channel>\d+))?",
    # Operetta / Opera Phenix (Harmony): r02c03f01p01-ch1sk1fk1fl1.tiff
    "operetta": r"r(?P<row>\d{2})c(?P<column>\d{2})f(?P<site>\d+)p\d+-ch(?P<channel>\d+)",
    # IN Cell Analyzer: B - 03(fld 1 wv DAPI - DAPI).tif
    "incell": r"(?P<row>[A-Z]{1,2}) - (?P<column>\d{1,2})\(fld (?P<site>\d+)"
    r"(?: wv (?P<channel>[^)]+?))?\)",
}
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class TiffField:
    """One field of view in the folder: its well, its site, and a file per channel."""

    well: str
    site: int
    files: dict[str, Path] = field(default_factory=dict)
    """Channel token from the file name (``""`` when one file holds every channel) -> file."""


def compile_pattern(pattern: str) -> re.Pattern:
    """A pattern by name from :data:`FILENAME_PATTERNS`, or a regular expression of its own."""
    text = FILENAME_PATTERNS.get(pattern, pattern)
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise SettingError(f"file name pattern {pattern!r} is not a valid regex ({exc}).") from None
    groups = set(regex.groupindex)
    if "site" not in groups or not ({"well"} <= groups or {"row", "column"} <= groups):
        raise SettingError(
            f"file name pattern {pattern!r} needs named groups 'site' and 'well' (or 'row' "
            f"and 'column'); known patterns: {', '.join(FILENAME_PATTERNS)}."
        )
    return regex


def scan_tiff_folder(folder: str | Path, pattern: str = "metaxpress") -> list[TiffField]:
    """The fields in a folder of TIFFs, sorted by well and site; every field has all channels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder.")
    regex = compile_pattern(pattern)
    fields: dict[tuple[str, int], TiffField] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in TIFF_SUFFIXES:
            continue
        match = regex.search(path.stem)
        if not match:
            continue
        well = _well(match)
        site = int(match.group("site"))
        token = (match.groupdict().get("channel") or "").strip()
        entry = fields.setdefault((well, site), TiffField(well, site))
        if token in entry.files:
            raise InputError(
                f"{folder}: {path.name} and {entry.files[token].name} are both well {well}, "
                f"site {site}{f', channel {token}' if token else ''}."
            )
        entry.files[token] = path
    if not fields:
        raise InputError(f"{folder}: no TIFF file name matches the pattern {pattern!r}.")
    ordered = [fields[key] for key in sorted(fields)]
    channels = set(ordered[0].files)
    for entry in ordered:
        if set(entry.files) != channels:
            missing = sorted(channels ^ set(entry.files))
            raise InputError(
                f"{folder}: well {entry.well} site {entry.site} lacks or adds channel(s) "
                f"{', '.join(missing)} compared with well {ordered[0].well} site {ordered[0].site}."
            )
    return ordered


def _well(match: re.Match) -> str:
    groups = match.groupdict()
    if groups.get("well"):
        return parse_well(groups["well"])
    row = groups["row"]
    if row.isdigit():  # Operetta numbers rows from 1: r02 is row B
        row = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(row) - 1]
    return parse_well(f"{row}{int(groups['column']):02d}")


def channel_tokens(fields: list[TiffField]) -> list[str]:
    """The channel tokens of a folder, in natural order (w2 before w10)."""
    return sorted(fields[0].files, key=lambda t: (len(t), t) if t.isdigit() else (0, t))


def default_channel_names(fields: list[TiffField]) -> list[str]:
    """Names for the channels when the user gives none: the token, or C<n> for numbers."""
    tokens = channel_tokens(fields)
    if tokens == [""]:
        image = _bioimage(fields[0].files[""])
        names = [str(n) for n in image.channel_names]
        if names and not any(n.startswith("Channel:") for n in names):
            return names
        return [f"C{i}" for i in range(image.dims.C)]
    return [f"C{t}" if t.isdigit() else re.sub(r"\W+", "", t.split(" - ")[0]) for t in tokens]


def read_tiff_field(entry: TiffField, tokens: list[str]) -> np.ndarray:
    """A field's pixels as CYX: the first time point, Z planes max-projected."""
    planes = []
    for token in tokens:
        path = entry.files[token]
        try:
            data = _bioimage(path).get_image_data("CZYX", T=0)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file is named in one sentence
            raise InputError(f"{path}: cannot be read as a TIFF image ({exc}).") from exc
        planes.append(np.asarray(data).max(axis=1))
    return np.concatenate(planes, axis=0)


def _bioimage(path: Path):
    try:
        import bioio_tifffile
        from bioio import BioImage
    except ImportError as exc:
        raise InputError(
            "reading TIFF folders needs bioio and bioio-tifffile "
            "(pip install bioio bioio-tifffile)."
        ) from exc
    try:
        return BioImage(path, reader=bioio_tifffile.Reader)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one sentence
        raise InputError(f"{path}: cannot be read as a TIFF image ({exc}).") from exc
