"""Commands about the inference runtime: info (versions, models, backends) and export."""

from __future__ import annotations

from pathlib import Path

import click

from .options import setting_option


@click.command(short_help="Version, built-in models and inference backends here.")
def info() -> None:
    """Print the version, the built-in models and every inference backend.

    For each backend: its version and devices, or the one-line reason it cannot run here;
    then the backend ``--backend auto`` would take on this machine and why, and the
    layout of a plate run's local cluster here.
    """
    from .. import __version__
    from ..model.architectures import builtin_model_path
    from ..runtime import BACKENDS, backend_report, choose_backend
    from ..weights import BUILTIN_MODELS

    click.echo(f"cellseg-hcs {__version__}")
    click.echo("models:")
    for name, (_, description) in BUILTIN_MODELS.items():
        present = "" if builtin_model_path(name).is_file() else " (missing from this install)"
        click.echo(f"  {name:<12} {description}{present}")
    click.echo("backends:")
    width = max(len(name) for name in BACKENDS)
    for name, availability in backend_report().items():
        if availability.ok:
            devices = ", ".join(availability.devices)
            click.echo(f"  {name:<{width}}  {availability.version}  devices: {devices}")
            if availability.reason:  # runs, with something the user should fix
                click.echo(f"  {'':<{width}}  note: {availability.reason}")
        else:
            click.echo(f"  {name:<{width}}  unavailable: {availability.reason}")
    chosen, reason = choose_backend("auto")
    click.echo(f"auto: {chosen} ({reason}; with a model, CPU backends are measured on it)")
    from ..plate.layout import machine_layout

    layout = machine_layout()
    click.echo(f"plate layout: {layout.summary()} ({layout.reason})")


@click.command(short_help="Export a model's network to ONNX.")
@setting_option("model")
@click.option(
    "--format",
    "file_format",
    default="onnx",
    show_default=True,
    type=click.Choice(["onnx"]),
    help="Exchange format to write.",
)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="File to write.")
def export(model: str, file_format: str, out: Path) -> None:
    """Export a model's network (dynamic batch, height and width) for other runtimes.

    The ONNX graph takes ``image`` (N, C, H, W) float32 normalized with the model's
    percentiles and returns ``probabilities`` (N, K, H, W), the model's output maps.

    \b
    Example:
      cellseg-hcs export --model nuclei --format onnx --out nuclei.onnx
    """
    from ..model.model import load_model
    from ..runtime.export import export_model

    written = export_model(load_model(model), out, file_format)
    click.echo(f"{file_format} written to {written}")
