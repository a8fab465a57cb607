"""The ``report`` command: the QC page of a plate run."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Write the QC page (one HTML file) of a plate run.")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="The page to write (default: RUN_DIR/report.html).",
)
@click.option(
    "--feature",
    "features",
    multiple=True,
    help="A per-object feature column whose per-well median the plate map can show, "
    "e.g. Nuclei_AreaShape_Area (repeat for more).",
)
def report(run_dir: Path, out: Path | None, features: tuple[str, ...]) -> None:
    """Write the QC page of the plate run in RUN_DIR (the --out folder of `run`).

    One self-contained HTML file (open it in any browser, offline): the run's numbers and
    settings, a plate map coloured by objects per well (and by the median of each
    --feature), every well's field with its object outlines, feature distributions with
    outlier wells, and the failed fields with their errors. `run` writes it at its end too.

    \b
    Example:
      cellseg-hcs report results/ --feature Nuclei_AreaShape_Area
    """
    from ..report import write_report

    path = write_report(run_dir, out=out, features=features)
    click.echo(f"report: {path}  ({path.stat().st_size / 1e6:.1f} MB; open it in a browser)")
