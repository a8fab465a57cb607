"""Options several commands share, declared once so their names and help never drift."""

from __future__ import annotations

import click

model_option = click.option(
    "--model", "-m", default="nuclei", show_default=True,
    help="Built-in model name or a .safetensors model file.")
backend_option = click.option(
    "--backend", default="auto", show_default=True,
    help="Inference backend: auto, torch, onnxruntime or tensorrt.")
device_option = click.option(
    "--device", default=None, help="cpu, cuda or cuda:N (default: the backend's).")
diameter_option = click.option(
    "--diameter", type=float, default=None,
    help="Typical object diameter in pixels, when far from the model's own (about 30): the "
         "network then runs on the image resampled to it (faster for large nuclei, and finds "
         "very small ones).")
