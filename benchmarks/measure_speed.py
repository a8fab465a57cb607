"""Measurement speed: objects per second per core, ours against cp_measure's, per set and group.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        python benchmarks/measure_speed.py --fields 2 --cp-objects 150

Data: 2160 x 2160 fields tiled from 512 x 512 crops of the mnfinder images with their true
nuclei labels (``../shared/data/mnfinder`` test split, else ``tests/data/mnfinder``),
rescaled to a common 16-bit range; a second channel ``Other`` is the same kind of montage in
another order (real pixels, not aligned with the nuclei), so that correlation runs. Every
field is measured by :func:`cellseg_hcs.field.measure.measure_objects` (each group alone,
then each set), and by cp_measure's object-by-object functions
(:mod:`cellseg_hcs.field.measure.reference`) on the labels cut down to the first
``--cp-objects`` objects (cp_measure takes seconds per hundred objects; its rate per object
hardly depends on how many there are, see the JSON). One process, one thread, so the
numbers are per core; ratios are from the same run.

Writes ``benchmarks/results/measure_speed.json`` and the table between the markers in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent.parent / "shared" / "data" / "mnfinder"
LOCAL = REPO / "tests" / "data" / "mnfinder"
TILE = 512
MARKERS = ("<!-- measure-speed-table:start -->", "<!-- measure-speed-table:end -->")


def mnfinder_folder() -> Path:
    for folder in (Path("/work/shared/data/mnfinder"), SHARED, LOCAL):
        if (folder / "images").is_dir() and any((folder / "images").glob("test__*")):
            return folder
    raise SystemExit("no mnfinder images found")


def tiles(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """512 x 512 crops (image rescaled to 0..1, labels) of the test images."""
    import tifffile

    out = []
    for path in sorted((folder / "images").glob("test__*.tif")):
        image = tifffile.imread(path).astype(np.float64)
        labels = tifffile.imread(folder / "nuclei_labels" / path.name).astype(np.int32)
        low, high = np.percentile(image, [1, 99.8])
        image = np.clip((image - low) / max(high - low, 1e-6), 0, 1.2)
        out.append((image[:TILE, :TILE], labels[:TILE, :TILE]))
    return out


def montage(blocks, seed: int, side: int = 2160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One field: (labels 1..N, DNA uint16, Other uint16)."""
    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng(seed)
    per_side = -(-side // TILE)
    picks = rng.integers(0, len(blocks), size=(per_side, per_side))
    others = rng.integers(0, len(blocks), size=(per_side, per_side))
    labels = np.zeros((per_side * TILE,) * 2, np.int32)
    dna = np.zeros(labels.shape)
    other = np.zeros(labels.shape)
    offset = 0
    for i in range(per_side):
        for j in range(per_side):
            window = np.s_[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
            image, tile_labels = blocks[picks[i, j]]
            dna[window][: image.shape[0], : image.shape[1]] = image
            tile = np.where(tile_labels > 0, tile_labels + offset, 0)
            labels[window][: tile.shape[0], : tile.shape[1]] = tile
            offset += int(tile_labels.max())
            pixels, _ = blocks[others[i, j]]
            other[window][: pixels.shape[0], : pixels.shape[1]] = pixels
    labels = relabel_sequential(labels[:side, :side])[0].astype(np.int32)
    as_uint16 = lambda a: (a[:side, :side] * 4000 + 100).astype(np.uint16)  # noqa: E731
    return labels, as_uint16(dna), as_uint16(other)


def first_objects(labels: np.ndarray, count: int) -> np.ndarray:
    return np.where(labels <= count, labels, 0)


def timed(function, repeats: int = 1) -> float:
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def _cp_measure_run(groups, labels, planes) -> None:
    from cellseg_hcs.field.measure import reference
    from cellseg_hcs.field.measure.objects import FieldObjects

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for group in groups:
            reference.GROUPS[group](FieldObjects(labels, planes))


def run(fields: int, cp_objects: int, repeats: int) -> dict:
    from cellseg_hcs.field.measure import (
        FEATURE_GROUPS,
        FEATURE_SETS,
        cellprofiler_scale,
        measure_objects,
        reference,
    )

    blocks = tiles(mnfinder_folder())
    rows: dict[str, dict] = {}
    objects_total = 0
    cp_objects_total = 0
    for seed in range(fields):
        labels, dna, other = montage(blocks, seed)
        channels = {"DNA": dna, "Other": other}
        count = int(labels.max())
        objects_total += count
        few = first_objects(labels, cp_objects)
        few_count = int(few.max())
        cp_objects_total += few_count
        planes = {name: cellprofiler_scale(p) for name, p in channels.items()}
        measure_objects(labels, channels, features="minimal")  # warm-up: imports, columns
        for name in [*FEATURE_SETS, *FEATURE_GROUPS]:
            features = name if name in FEATURE_SETS else [name]
            ours = functools.partial(measure_objects, labels, channels, features=features)
            seconds = timed(ours, repeats)
            row = rows.setdefault(name, {"ours_seconds": 0.0, "cp_seconds": 0.0})
            row["ours_seconds"] += seconds
            groups = FEATURE_SETS.get(name, (name,))
            cp_groups = [g for g in groups if g in reference.GROUPS]

            theirs = functools.partial(_cp_measure_run, cp_groups, few, planes)
            row["cp_seconds"] += timed(theirs, 1) if cp_groups else 0.0
            print(f"field {seed} {name}: ours {seconds:.2f} s", flush=True)
    for row in rows.values():
        row["ours_objects_per_second"] = objects_total / row["ours_seconds"]
        row["cp_objects_per_second"] = (
            cp_objects_total / row["cp_seconds"] if row["cp_seconds"] else None
        )
        row["ratio"] = (
            row["ours_objects_per_second"] / row["cp_objects_per_second"]
            if row["cp_objects_per_second"]
            else None
        )
    return {
        "fields": fields,
        "field_size": "2160x2160",
        "channels": ["DNA", "Other"],
        "objects": objects_total,
        "cp_measure_objects": cp_objects_total,
        "rows": rows,
    }


def machine() -> dict:
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line),
            "",
        )
    except OSError:
        pass
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {
        "cpu": model,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": threads,
    }


def table(result: dict) -> str:
    lines = [
        "| set / group | ours objects/s | cp_measure objects/s | x cp_measure |",
        "|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        cp = "-" if row["cp_objects_per_second"] is None else f"{row['cp_objects_per_second']:.0f}"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.1f}"
        lines.append(f"| {name} | {row['ours_objects_per_second']:.0f} | {cp} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=2)
    parser.add_argument("--cp-objects", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/measure_speed.json")
    parser.add_argument("--readme", type=Path, default=REPO / "benchmarks/README.md")
    args = parser.parse_args(argv)
    result = run(args.fields, args.cp_objects, args.repeats)
    result["machine"] = machine()
    result["command"] = "python " + " ".join(["benchmarks/measure_speed.py", *sys.argv[1:]])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    text = table(result)
    print(text)
    readme = args.readme.read_text() if args.readme.exists() else ""
    if MARKERS[0] in readme:
        head, rest = readme.split(MARKERS[0], 1)
        tail = rest.split(MARKERS[1], 1)[1]
        args.readme.write_text(f"{head}{MARKERS[0]}\n{text}\n{MARKERS[1]}{tail}")


if __name__ == "__main__":
    main()
