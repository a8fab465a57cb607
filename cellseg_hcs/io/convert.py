"""Writing NGFF HCS plates: from a folder of microscope TIFFs, or from arrays in memory.

The plate is written under a temporary name beside ``out`` and renamed when complete, so a
plate path either holds a whole plate or nothing.

Examples
--------
>>> convert_tiff_folder("export/", "plate.zarr", channel_names=["DNA"])  # doctest: +SKIP
>>> write_plate("demo.zarr", {("B02", 0): image}, channel_names=["DNA"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError, SettingError
from .atomic import atomic_path, check_can_write
from .plate import ngff_format, parse_well, split_well

log = logging.getLogger(__name__)

NGFF_VERSIONS = {"0.4": 2, "0.5": 3}
CHANNEL_COLORS = ("0000FF", "00FF00", "FF0000", "FF00FF", "FFFF00", "00FFFF", "FFFFFF")

FieldPixels = np.ndarray | Callable[[], np.ndarray]


def write_plate(
    out: str | Path,
    fields: Mapping[tuple[str, int], FieldPixels],
    *,
    channel_names: list[str],
    plate_name: str | None = None,
    ngff_version: str = "0.5",
    levels: int | None = None,
    chunk_size: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write fields of view as an OME-Zarr HCS plate.

    Parameters
    ----------
    out:
        The plate to write (a ``.zarr`` folder).
    fields:
        ``(well, site) -> pixels``: CYX (or YX) arrays, or functions returning one, called
        one field at a time so a large plate never sits in memory.
    channel_names:
        One name per channel, stored in the ``omero`` metadata.
    ngff_version:
        ``"0.5"`` (zarr v3) or ``"0.4"`` (zarr v2).
    levels:
        Resolution levels, each half the size of the one before; by default as many as keep
        the smallest side at 256 pixels or more.
    """
    out = Path(out)
    if ngff_version not in NGFF_VERSIONS:
        raise SettingError(
            f"NGFF version {ngff_version!r} is not one of {', '.join(NGFF_VERSIONS)}."
        )
    if out.exists() and not overwrite:
        raise SettingError(f"{out} already exists; pass overwrite (--overwrite) to replace it.")
    if not fields:
        raise InputError(f"{out}: no fields to write.")
    check_can_write(out.absolute().parent)
    layout = _layout(fields)
    with atomic_path(out) as tmp:
        _write(
            tmp,
            layout,
            fields,
            list(channel_names),
            plate_name or _plate_name(out),
            ngff_version,
            levels,
            chunk_size,
        )
    return out


def _plate_name(out: Path) -> str:
    return out.name.removesuffix(".zarr").removesuffix(".ome")


def _layout(fields: Mapping[tuple[str, int], FieldPixels]) -> dict[str, list[tuple[int, str]]]:
    """``well -> [(site, path of the field in the well)]``, wells and sites in order."""
    wells: dict[str, list[int]] = {}
    for well, site in fields:
        wells.setdefault(well, []).append(site)
    for well in wells:
        if parse_well(well) != well:
            raise SettingError(f"well {well!r} should be written as {parse_well(well)!r}.")
    return {
        w: [(s, str(i)) for i, s in enumerate(sorted(sites))] for w, sites in sorted(wells.items())
    }


def _write(path: Path, layout, fields, channel_names, plate_name, version, levels, chunk_size):
    import zarr
    from ome_zarr.writer import (
        add_metadata,
        write_image,
        write_plate_metadata,
        write_well_metadata,
    )

    fmt = ngff_format(NGFF_VERSIONS[version])
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    parts = {well: split_well(well) for well in layout}
    rows = sorted({row for row, _ in parts.values()}, key=lambda r: (len(r), r))
    columns = sorted({column for _, column in parts.values()}, key=int)
    well_paths = [f"{row}/{column}" for row, column in parts.values()]
    write_plate_metadata(
        root,
        rows,
        columns,
        well_paths,
        fmt=fmt,
        name=plate_name,
        field_count=max(len(sites) for sites in layout.values()),
    )
    for well, sites in layout.items():
        well_group = root.require_group("/".join(parts[well]))
        write_well_metadata(well_group, [{"path": p} for _, p in sites], fmt=fmt)
        for site, field_path in sites:
            pixels = fields[(well, site)]
            image = np.asarray(pixels() if callable(pixels) else pixels)
            image = image[None] if image.ndim == 2 else image
            if image.shape[0] != len(channel_names):
                raise InputError(
                    f"well {well} site {site} has {image.shape[0]} channel(s), "
                    f"but {len(channel_names)} channel name(s) were given."
                )
            group = well_group.require_group(field_path)
            n_levels = levels or _default_levels(image.shape[-2:])
            chunks = (1, *(min(chunk_size, s) for s in image.shape[-2:]))
            write_image(
                image,
                group,
                scale_factors=[2**i for i in range(1, n_levels)],
                axes="cyx",
                fmt=fmt,
                storage_options={"chunks": chunks},
            )
            add_metadata(group, {"omero": _omero(channel_names, image.dtype)}, fmt=fmt)
            log.info("wrote well %s site %s %s", well, site, image.shape)


def _default_levels(shape: tuple[int, int], smallest: int = 256) -> int:
    levels, side = 1, min(shape)
    while side // 2 >= smallest:
        side //= 2
        levels += 1
    return levels


def _omero(channel_names: list[str], dtype: np.dtype) -> dict:
    top = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0
    return {
        "channels": [
            {
                "label": name,
                "color": CHANNEL_COLORS[i % len(CHANNEL_COLORS)],
                "active": True,
                "window": {"min": 0.0, "max": top, "start": 0.0, "end": top},
            }
            for i, name in enumerate(channel_names)
        ]
    }


def convert_tiff_folder(
    folder: str | Path,
    out: str | Path,
    *,
    pattern: str = "metaxpress",
    channel_names: list[str] | None = None,
    plate_name: str | None = None,
    ngff_version: str = "0.5",
    overwrite: bool = False,
) -> Path:
    """Convert a folder of TIFFs named by well and site into an NGFF HCS plate.

    ``pattern`` names a layout from
    :data:`~cellseg_hcs.io.tiff_folder.FILENAME_PATTERNS` or is a regex of its own.
    """
    from .tiff_folder import (
        channel_tokens,
        default_channel_names,
        read_tiff_field,
        scan_tiff_folder,
    )

    entries = scan_tiff_folder(folder, pattern)
    tokens = channel_tokens(entries)
    names = list(channel_names) if channel_names else default_channel_names(entries)
    fields = {(e.well, e.site): (lambda e=e: read_tiff_field(e, tokens)) for e in entries}
    return write_plate(
        out,
        fields,
        channel_names=names,
        plate_name=plate_name,
        ngff_version=ngff_version,
        overwrite=overwrite,
    )
