"""Commands about plates: run (segment + measure a whole plate) and convert (TIFFs -> plate)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .options import (
    FIELD_OPTIONS,
    cells_options,
    field_settings,
    progress_option,
    settings_options,
    verbose_option,
)


def _wells(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [w.strip() for w in value.split(",") if w.strip()]


@click.command(short_help="Segment and measure a whole OME-Zarr plate: labels + parquet.")
@click.argument("plate", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the tables (images.parquet, features/, objects/ for micronuclei, "
    "run.json, report.html).",
)
@settings_options(*FIELD_OPTIONS, "measure_channels")
@click.option(
    "--object",
    "object_name",
    default="Nuclei",
    show_default=True,
    help="Object name: labels/<object> and the column prefix (Nuclei_AreaShape_Area).",
)
@click.option(
    "--features",
    default="default",
    show_default=True,
    type=click.Choice(["minimal", "default", "full"]),
    help="minimal: location, shape, intensity; default: + texture, neighbors; "
    "full: every CellProfiler measurement, + correlation between channels.",
)
@click.option("--wells", default=None, help="Only these wells, e.g. B03,B04.")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Worker processes of the local dask cluster (default: sized to the machine; with "
    "a GPU, the CPU workers beside its predictor; see cellseg-hcs info).",
)
@click.option(
    "--scheduler",
    default=None,
    help="Run on an existing dask cluster: its scheduler address (tcp://host:8786).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Recompute fields that are already finished, and replace labels/<object> "
    "made by another model, scale or tool (refused without it). When the "
    "settings differ from OUT's earlier run, its tables are deleted first.",
)
@cells_options
@progress_option
@verbose_option
def run(
    plate: Path,
    out: Path,
    object_name: str,
    features: str,
    wells: str | None,
    workers: int | None,
    scheduler: str | None,
    overwrite: bool,
    progress: bool,
    **arguments,
) -> None:
    """Segment and measure every field of an OME-Zarr HCS PLATE (NGFF 0.4 or 0.5).

    Writes labels/<object> into each field of the plate, and into OUT: one parquet of
    CellProfiler-named per-object features per field, images.parquet (one row per
    field: count, status, timings) and run.json. Run the same command again to resume:
    finished fields are skipped and failed ones tried again. Exit status: 0 when every
    field is done, 1 when some failed (listed; the others are written), 2 on bad input.

    \b
    Example:
      cellseg-hcs run plate.zarr --out results/ --channel DNA --wells B03,B04
    """
    import logging

    import distributed  # noqa: F401 - configures its loggers on import; quiet them after

    from ..plate.run import run_plate

    if logging.getLogger().level > logging.DEBUG:  # dask's own chatter only with -vv
        logging.getLogger("distributed").setLevel(logging.WARNING)
    settings = field_settings(arguments)
    result = run_plate(
        plate,
        out,
        model=settings.model,
        settings=settings,
        object_name=object_name,
        features=features,
        wells=_wells(wells),
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        progress=progress,
    )
    images = result.images
    fields = len(images)
    counts = ", ".join(
        f"{int(images[column].sum())} {column.removeprefix('Count_')}"
        for column in images.columns
        if column.startswith("Count_")
    )
    # A field tried in this run that failed is counted as failed, not as computed.
    computed = result.computed - min(result.failed, result.computed)
    click.echo(
        f"{fields} field(s): {computed} computed, {result.skipped} already done, "
        f"{result.failed} failed; {counts} in {result.seconds:.1f} s"
    )
    if result.measured_diameter:
        click.echo(
            f"diameter: {result.measured_diameter:.0f} px measured on the first fields; "
            f"the network ran at {result.scale:.3g}x"
        )
    labelled = images[images["status"] != "failed"]
    if len(labelled):
        path = labelled["Metadata_FieldPath"].iloc[0]
        example = result.plate / path / "labels" / object_name
        sets = [name for name in result.counts if name != object_name]
        also = f" (and {', '.join(sets)} beside it)" if sets else ""
        others = len(labelled) - 1
        more = f"; the same in the other {others} finished field(s)" if others else ""
        click.echo(f"labels:   {example}{also}{more}")
    click.echo(f"features: {result.out / 'features'}  (one parquet per field)")
    for folder in sorted((result.out / "objects").glob("*")):
        click.echo(f"objects:  {folder}  (one parquet per field)")
    click.echo(f"images:   {result.out / 'images.parquet'}  (one row per field)")
    click.echo(f"manifest: {result.out / 'run.json'}")
    if result.report:
        click.echo(f"report:   {result.report}  (open it in a browser)")
    for _, row in images[images["status"] == "failed"].head(5).iterrows():
        click.echo(
            f"failed {row['Metadata_Well']} site {row['Metadata_Site']}: {row['error']}", err=True
        )
    if result.failed > 5:
        click.echo(
            f"... and {result.failed - 5} more: see the 'error' column of "
            f"{result.out / 'images.parquet'}",
            err=True,
        )
    if result.failed:
        sys.exit(1)


@click.command(short_help="Convert TIFFs named by well and site into an OME-Zarr plate.")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="The plate to write (a .zarr folder).",
)
@click.option(
    "--pattern",
    default="metaxpress",
    show_default=True,
    help="File name layout: metaxpress, operetta, incell, or a regex with named "
    "groups well (or row and column), site and optionally channel.",
)
@click.option(
    "--channel-names",
    default=None,
    help="Comma-separated channel names, e.g. DNA,ER (default: from the files).",
)
@click.option("--plate-name", default=None, help="Plate name (default: the --out name).")
@click.option(
    "--ngff",
    "ngff_version",
    default="0.5",
    show_default=True,
    type=click.Choice(["0.5", "0.4"]),
    help="NGFF version: 0.5 (zarr v3) or 0.4.",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def convert(
    folder: Path,
    out: Path,
    pattern: str,
    channel_names: str | None,
    plate_name: str | None,
    ngff_version: str,
    overwrite: bool,
) -> None:
    """Convert a FOLDER of TIFFs named by well and site into an OME-Zarr HCS plate.

    \b
    Example:
      cellseg-hcs convert export/ --out plate.zarr --channel-names DNA
    """
    from ..io.convert import convert_tiff_folder

    names = [n.strip() for n in channel_names.split(",")] if channel_names else None
    path = convert_tiff_folder(
        folder,
        out,
        pattern=pattern,
        channel_names=names,
        plate_name=plate_name,
        ngff_version=ngff_version,
        overwrite=overwrite,
    )
    from ..io.plate import open_plate

    plate = open_plate(path)
    click.echo(
        f"{path}: {len(plate.wells)} well(s), {len(plate.fields)} field(s), "
        f"channels {', '.join(plate.channel_names)} (NGFF {plate.ngff_version})"
    )
