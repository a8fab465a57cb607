"""The ``cellseg-hcs`` command: a thin click shell over the library.

Each command lives in a module of this package and is registered on :data:`main` below,
by name: the command modules never import this one.
Errors of the package's own types are printed as one sentence with exit code 2 (bad input,
nothing done) or 1 (some inputs of a batch failed, the others were written).
"""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..errors import CellSegError


class _FriendlyGroup(click.Group):
    """Prints a :class:`CellSegError` as one line (no traceback) and exits with its code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CellSegError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cellseg-hcs")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Segment cells in high-content screening images and plates, and measure every cell.

    \b
    Start with:
      cellseg-hcs segment image.tif --out labels/     label nuclei in image files
      cellseg-hcs run plate.zarr --out results/       a whole OME-Zarr plate -> labels + parquet
      cellseg-hcs info                                version, models and inference backends
    """
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from .model_commands import evaluate, segment, train
    from .plate_commands import convert, run
    from .report_commands import report
    from .runtime_commands import export, info
    from .serve_commands import serve

    for command in (segment, run, convert, report, train, evaluate, info, export, serve):
        main.add_command(command)


_register()
