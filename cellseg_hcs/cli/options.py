"""Options several commands share, declared once so their names and help never drift."""

from __future__ import annotations

import click

model_option = click.option(
    "--model",
    "-m",
    default="nuclei",
    show_default=True,
    help="Built-in model name or a .safetensors model file.",
)
backend_option = click.option(
    "--backend",
    default="auto",
    show_default=True,
    help="Inference backend: auto, torch, onnxruntime or tensorrt.",
)
device_option = click.option(
    "--device", default=None, help="cpu, cuda or cuda:N (default: the backend's)."
)
_DIAMETER_HELP = (
    "Typical object diameter in pixels, when far from the model's own (about 30): "
    "the network then runs on the image resampled to it (faster for large "
    "nuclei, and finds very small ones)."
)


def _diameter(ctx: click.Context, param: click.Parameter, value: str | None):
    from ..errors import SettingError
    from ..field.scale import parse_diameter

    try:
        return parse_diameter(value)
    except SettingError as exc:
        raise click.BadParameter(str(exc)) from None


diameter_option = click.option(
    "--diameter",
    default=None,
    callback=_diameter,
    metavar="PIXELS|auto",
    help=_DIAMETER_HELP + " 'auto' measures it on the plate's first fields and runs every field "
    "at the scale that follows (default: the fields' own scale).",
)
auto_diameter_option = click.option(
    "--diameter",
    default="auto",
    show_default=True,
    callback=_diameter,
    metavar="PIXELS|auto|native",
    help=_DIAMETER_HELP + " 'auto' measures it on each image and runs the network again, "
    "resampled, only on images whose objects are far from the model's "
    "size; 'native' never resamples.",
)
