"""``cellseg-hcs serve``: one warm model for many CellProfiler workers."""

from __future__ import annotations

from pathlib import Path

import click

from .options import verbose_option


@click.command(short_help="Keep a model warm for CellProfiler's RunCellSegHCS module.")
@click.option(
    "--model",
    "-m",
    default="nuclei",
    show_default=True,
    help="Model to keep loaded: built-in name or .safetensors file (clients may "
    "ask for others; they are loaded on first use).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where the model runs when a client does not say: auto, cpu, cuda or cuda:N.",
)
@verbose_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Keep 127.0.0.1 unless other machines must connect.",
)
@click.option("--port", default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option(
    "--connection-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write host, port and token (mode 0600). Default: "
    "$CELLSEG_HCS_SERVER_FILE or ~/.cache/cellseg-hcs/serve.json.",
)
@click.option(
    "--max-mb", default=512, show_default=True, help="Largest image a request may carry, in MiB."
)
def serve(
    model: str, device: str, host: str, port: int, connection_file: Path | None, max_mb: int
) -> None:
    """Keep a model warm and segment images sent by CellProfiler (RunCellSegHCS) or
    other local clients, one at a time, on one device (a GPU when there is one).

    \b
    Example:
      cellseg-hcs serve --model nuclei     then run CellProfiler pipelines with RunCellSegHCS
    """
    from ..serve import serve as run_server

    run_server(
        model,
        device=device,
        host=host,
        port=port,
        connection_file=connection_file,
        max_bytes=max_mb * 1024 * 1024,
    )
