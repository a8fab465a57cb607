"""Cells grown from our nuclei: accuracy per method on annotated whole cells, and speed.

Two commands::

    # seconds per field for each method, on a field tiled from the real ExampleFly crops
    python benchmarks/cells.py speed --repeat 3 --out benchmarks/results/cells_speed.json

    # cells F1@0.5 / AP per method on annotated whole-cell images: a Cellpose folder
    # (NAME_img.png, cell stain green + nuclei red, NAME_masks.png), or image + mask folders
    # with --masks and the channel indices of the cell stain and the nuclei
    python benchmarks/cells.py accuracy --images DIR [--masks DIR --cell-channel 0 \\
        --nuclei-channel 1] [--cell-model FILE] --out results.json

The nuclei are the shipped model's (``diameter="auto"``), on the nuclei channel, as
``cellseg-hcs segment --channel N --cells-channel M`` makes them; every method then grows
cells from the same nuclei. Scores are pooled over all images (``training.metrics``):
``f1`` at IoU 0.5, ``ap`` the mean over IoU 0.5..0.95 of TP / (TP + FP + FN), and COCO AP.
Speed is the median of ``--repeat`` runs, and each method's time is also given as a ratio to
``distance`` (which reads no image) in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cellseg_hcs.field.cells import CellSettings, cells_from_maps, cytoplasm, grow_cells  # noqa: E402

FLY = REPO / "examples" / "data" / "examplefly"

VARIANTS = {
    # CellProfiler's defaults, one method each
    "propagation": CellSettings(),
    "watershed": CellSettings(method="watershed"),
    "distance": CellSettings(method="distance"),
    # the threshold choices the issue compares (Otsu; a lower Li threshold)
    "propagation_otsu": CellSettings(threshold_method="otsu"),
    "propagation_li_x0.7": CellSettings(threshold_correction_factor=0.7),
}
"""What is compared, by name: CellProfiler's three methods and two threshold variants."""


def _environment() -> dict[str, str]:
    from importlib.metadata import version

    import skimage

    return {
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,
        "centrosome": version("centrosome"),
        "command": " ".join(sys.argv),
    }


def _time(function, repeat: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), result


# ----------------------------------------------------------------------------- speed


def tiled_field(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` (DNA, Actin) field tiled from the four ExampleFly crops."""
    crops = sorted({p.name.rsplit("_", 1)[0] for p in FLY.glob("*_DNA.tif")})
    planes = {
        channel: [tifffile.imread(FLY / f"{crop}_{channel}.tif") for crop in crops]
        for channel in ("DNA", "Actin")
    }
    side = planes["DNA"][0].shape[0]
    count = -(-size // side)
    out = []
    for channel in ("DNA", "Actin"):
        rows = [
            np.hstack([planes[channel][(r * count + c) % len(crops)] for c in range(count)])
            for r in range(count)
        ]
        out.append(np.vstack(rows)[:size, :size])
    return out[0], out[1]


def speed(size: int, repeat: int) -> dict:
    import cellseg_hcs as cs

    dna, stain = tiled_field(size)
    model = cs.load_model("nuclei")
    nuclei_seconds, nuclei = _time(lambda: model.segment(dna), 1)
    rows = {}
    for name, settings in VARIANTS.items():
        seconds, cells = _time(lambda s=settings: grow_cells(nuclei, stain, s), repeat)
        ring_seconds, _ = _time(lambda c=cells: cytoplasm(c, nuclei), repeat)
        rows[name] = {"seconds_cells": seconds, "seconds_cytoplasm": ring_seconds}
    baseline = rows["distance"]["seconds_cells"]
    for row in rows.values():
        row["ratio_to_distance"] = row["seconds_cells"] / baseline
    return {
        "field": f"{size} x {size} pixels tiled from examples/data/examplefly (DNA, Actin)",
        "nuclei": int(nuclei.max()),
        "seconds_nuclei_shipped_model": nuclei_seconds,
        "repeat": repeat,
        "methods": rows,
        "environment": _environment(),
    }


# ----------------------------------------------------------------------------- accuracy


def _samples(images: Path, masks: Path | None, cell_channel: int, nuclei_channel: int):
    """(name, cell stain, nuclei stain, true cells) for every annotated image."""
    from cellseg_hcs.training.data import training_folder

    for sample in training_folder(images, masks):
        planes = np.asarray(sample.image)
        if masks is None:  # Cellpose folder: (cell stain, nuclei) already
            cell_index, nuclei_index = 0, 1
        else:
            cell_index, nuclei_index = cell_channel, nuclei_channel
            if planes.ndim == 3 and planes.shape[-1] < planes.shape[0]:
                planes = np.moveaxis(planes, -1, 0)
        yield sample.name, planes[cell_index], planes[nuclei_index], sample.labels


def accuracy(
    images: Path, masks: Path | None, cell_channel: int, nuclei_channel: int, cell_model: str | None
) -> dict:
    import cellseg_hcs as cs
    from cellseg_hcs.training.metrics import InstanceScores

    nuclei_model = cs.load_model("nuclei")
    model = cs.load_model(cell_model) if cell_model else None
    names = list(VARIANTS) + (["model"] if model else [])
    scores = {name: InstanceScores() for name in names}
    seconds = {name: [] for name in names}
    one_per_nucleus = {name: True for name in names}
    count = 0
    for _, stain, dna, truth in _samples(images, masks, cell_channel, nuclei_channel):
        count += 1
        nuclei = nuclei_model.segment(dna)
        for name in names:
            started = time.perf_counter()
            if name == "model":
                maps = model.predict_maps(np.stack([stain, dna]))
                cells = cells_from_maps(nuclei, maps)
            else:
                cells = grow_cells(nuclei, stain, VARIANTS[name])
            seconds[name].append(time.perf_counter() - started)
            scores[name].add(truth, cells)
            present = set(np.unique(cells)) - {0}
            one_per_nucleus[name] &= present == set(np.unique(nuclei)) - {0}
    rows = {}
    for name in names:
        summary = scores[name].summary()
        rows[name] = {
            "f1": summary["f1"],
            "precision": summary["precision"],
            "recall": summary["recall"],
            "ap": summary["ap"],
            "coco_ap": summary["coco_ap"],
            "seconds_per_field": float(np.mean(seconds[name])),
            "one_cell_per_nucleus": one_per_nucleus[name],
        }
    return {"images": count, "data": str(images), "methods": rows, "environment": _environment()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fast = commands.add_parser("speed", help="seconds per field for each method")
    fast.add_argument("--size", type=int, default=1152)
    fast.add_argument("--repeat", type=int, default=3)
    fast.add_argument("--out", type=Path)
    scored = commands.add_parser("accuracy", help="F1 / AP per method on annotated cells")
    scored.add_argument("--images", type=Path, required=True)
    scored.add_argument("--masks", type=Path)
    scored.add_argument("--cell-channel", type=int, default=0)
    scored.add_argument("--nuclei-channel", type=int, default=1)
    scored.add_argument("--cell-model", default=None)
    scored.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "speed":
        result = speed(args.size, args.repeat)
    else:
        result = accuracy(
            args.images, args.masks, args.cell_channel, args.nuclei_channel, args.cell_model
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
