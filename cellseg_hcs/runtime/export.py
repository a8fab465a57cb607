"""Export a model's network to ONNX (dynamic batch, height and width), with a disk cache.

The exported graph takes ``image`` (N, C, H, W) float32 normalized tiles and returns
``probabilities`` (N, K, H, W) float32 (sigmoid applied), exactly what every backend's
``predict`` returns. Height and width are padded inside the graph to the network's
multiple (reflect), as the torch network does itself, so any size of at least that
multiple runs; the runtime always hands it tiles that are already a multiple.

Examples
--------
>>> from cellseg_hcs import load_model
>>> export_onnx(load_model("nuclei"), "nuclei.onnx")  # doctest: +SKIP
PosixPath('nuclei.onnx')
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from ..errors import SettingError
from ..io.atomic import write_atomic_bytes

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
FORMATS = ("onnx",)


def cache_dir() -> Path:
    """Where compiled artifacts (ONNX files, TensorRT engines, backend choices) are kept.

    ``$CELLSEG_HCS_CACHE`` when set, else ``$XDG_CACHE_HOME/cellseg-hcs`` or
    ``~/.cache/cellseg-hcs``.
    """
    explicit = os.environ.get("CELLSEG_HCS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cellseg-hcs"


# Precisions the graph can be typed in: float32 throughout, or float16 inside with float32
# input and output (TensorRT 11 builds strongly typed networks: precision is the graph's).
GRAPH_PRECISIONS = ("fp32", "fp16")


def _probability_network(network: Any, precision: str = "fp32"):
    """The network with its padding made traceable and the sigmoid inside the graph.

    For ``fp16`` a float16 copy of the network runs between a cast of the float32 input and
    a cast of the logits back to float32 (the sigmoid and the output stay float32); the
    model's own network is never converted.
    """
    import copy

    import torch
    import torch.nn.functional as F

    multiple = int(getattr(network, "multiple", 1))
    half = precision == "fp16"
    if half:
        network = copy.deepcopy(network).half()

    class ProbabilityNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            height, width = image.shape[-2], image.shape[-1]
            if half:
                image = image.half()
            if multiple > 1:
                # Pads computed from the traced shape, so they stay dynamic in the graph
                # (the network's own Python-side padding would be frozen at export).
                pad_h = (multiple - height % multiple) % multiple
                pad_w = (multiple - width % multiple) % multiple
                image = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
            probabilities = torch.sigmoid(self.network(image).float())
            return probabilities[..., :height, :width]

    return ProbabilityNetwork().eval()


def onnx_bytes(model: Any, opset: int = OPSET, precision: str = "fp32") -> bytes:
    """The model's network as an ONNX graph (bytes), with dynamic batch, height and width.

    Parameters
    ----------
    model:
        A :class:`~cellseg_hcs.model.model.Model`.
    opset:
        ONNX opset; 17 has everything the UNet needs (including the space-to-depth stem,
        exported as Reshape/Transpose) and is read by onnxruntime >= 1.13 and TensorRT >= 8.6.
    precision:
        ``fp32``, or ``fp16``: weights and convolutions typed float16 with float32 input and
        output (for TensorRT 11's strongly typed builds).
    """
    import torch

    if precision not in GRAPH_PRECISIONS:
        raise SettingError(
            f"an ONNX export is typed {' or '.join(GRAPH_PRECISIONS)}, not {precision!r}."
        )
    network = _probability_network(model.network, precision)
    multiple = int(getattr(model.network, "multiple", 1))
    side = max(multiple, 32) * 2
    example = torch.zeros(1, model.info.in_channels, side, side)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter is the one that needs no extra packages; its
        # deprecation and tracing notes are expected here (the traced branch is checked
        # against torch in the tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            do_constant_folding=True,
        )
    return _with_metadata(buffer.getvalue(), model, multiple, precision)


def _with_metadata(graph: bytes, model: Any, multiple: int, precision: str = "fp32") -> bytes:
    import onnx

    proto = onnx.load_from_string(graph)
    entries = {
        "cellseg_hcs.model_hash": model.hash,
        "cellseg_hcs.outputs": ",".join(model.info.outputs),
        "cellseg_hcs.multiple": str(multiple),
        "cellseg_hcs.field.normalize": repr(model.info.normalize),
        "cellseg_hcs.precision": precision,
    }
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = (
        f"cellseg-hcs model {model.hash}: normalized NCHW float32 image -> "
        f"probabilities ({', '.join(model.info.outputs)})."
    )
    return proto.SerializeToString()


def cached_onnx(model: Any, precision: str = "fp32") -> Path:
    """Path of the model's ONNX file in the cache, exporting it on first use (once per model
    and precision)."""
    typed = "" if precision == "fp32" else f"-{precision}"
    path = cache_dir() / "onnx" / f"{model.hash}-opset{OPSET}{typed}.onnx"
    if not path.is_file():
        write_atomic_bytes(path, onnx_bytes(model, precision=precision))
    return path


def export_model(model: Any, out: str | Path, file_format: str = "onnx") -> Path:
    """Write the model's network in an exchange format (``onnx``) to ``out``.

    Parameters
    ----------
    model:
        A :class:`~cellseg_hcs.model.model.Model`.
    out:
        File to write (atomically).
    file_format:
        ``onnx``: dynamic batch, height and width; input ``image``, output ``probabilities``.
    """
    if file_format not in FORMATS:
        raise SettingError(
            f"unknown export format {file_format!r}; choose from {', '.join(FORMATS)}."
        )
    out = Path(out)
    write_atomic_bytes(out, onnx_bytes(model))
    return out
