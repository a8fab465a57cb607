"""Measurement speed: objects per second per core, ours against cp_measure's, per set and group.

    python benchmarks/measure_speed.py --fields 2

Data: 2160 x 2160 fields tiled from 512 x 512 crops of the mnfinder images with their true
nuclei labels (``../shared/data/mnfinder`` test split, else ``tests/data/mnfinder``),
rescaled to a common 16-bit range; a second channel ``Other`` is the same kind of montage in
another order (real pixels, not aligned with the nuclei), so that correlation runs. Every
field is measured by :func:`cellseg_hcs.field.measure.measure_objects`, each group alone and
each set, and by cp_measure's object-by-object functions
(:mod:`cellseg_hcs.field.measure.reference`) on all objects of the field (``--cp-objects N``
keeps the first N: granularity and Costes' thresholds cost the same for any number of
objects, so a subset understates cp_measure's rate for them). cp_measure has no location
group (the Identify modules' centres); its time for a set is the sum of its groups'. One
process, one thread (the script sets OMP/MKL/OPENBLAS to 1 before numpy loads), after a
warm-up field, so the numbers are per core; ratios are from the same run.

Writes ``benchmarks/results/measure_speed.json`` and the table between the markers in
``benchmarks/README.md``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

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


def _cp_measure_group(group: str, labels: np.ndarray, planes: dict) -> None:
    from cellseg_hcs.field.measure import reference
    from cellseg_hcs.field.measure.objects import FieldObjects

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.GROUPS[group](FieldObjects(labels, planes))


def run(fields: int, cp_objects: int | None, repeats: int) -> dict:
    from cellseg_hcs.field.measure import (
        FEATURE_GROUPS,
        FEATURE_SETS,
        cellprofiler_scale,
        measure_objects,
        reference,
    )

    blocks = tiles(mnfinder_folder())
    names = [*FEATURE_SETS, *FEATURE_GROUPS]
    ours = {name: 0.0 for name in names}
    theirs = {group: 0.0 for group in reference.GROUPS}
    objects_total = cp_objects_total = 0
    warm_labels, warm_dna, warm_other = montage(blocks, fields)  # imports, caches, columns
    measure_objects(warm_labels, {"DNA": warm_dna, "Other": warm_other}, features="full")
    _cp_measure_group("shape", first_objects(warm_labels, 20), {"DNA": warm_dna / 65535.0})
    for seed in range(fields):
        labels, dna, other = montage(blocks, seed)
        channels = {"DNA": dna, "Other": other}
        objects_total += int(labels.max())
        for name in names:
            features = name if name in FEATURE_SETS else [name]
            call = functools.partial(measure_objects, labels, channels, features=features)
            ours[name] += timed(call, repeats)
            print(f"field {seed} ours {name}: {ours[name]:.2f} s so far", flush=True)
        few = labels if cp_objects is None else first_objects(labels, cp_objects)
        cp_objects_total += int(few.max())
        planes = {name: cellprofiler_scale(p) for name, p in channels.items()}
        for group in reference.GROUPS:
            theirs[group] += timed(functools.partial(_cp_measure_group, group, few, planes))
            print(f"field {seed} cp_measure {group}: {theirs[group]:.2f} s so far", flush=True)
    rows: dict[str, dict] = {}
    for name in names:
        groups = FEATURE_SETS.get(name, (name,))
        cp_seconds = sum(theirs[g] for g in groups if g in theirs)
        row = {
            "ours_seconds": ours[name],
            "ours_objects_per_second": objects_total / ours[name],
            "cp_seconds": cp_seconds or None,
            "cp_objects_per_second": cp_objects_total / cp_seconds if cp_seconds else None,
        }
        row["ratio"] = (
            row["ours_objects_per_second"] / row["cp_objects_per_second"]
            if row["cp_objects_per_second"]
            else None
        )
        rows[name] = row
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
    threads = {
        k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }
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
    parser.add_argument("--cp-objects", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/measure_speed.json")
    parser.add_argument("--readme", type=Path, default=REPO / "benchmarks/README.md")
    args = parser.parse_args(argv)
    result = run(args.fields, args.cp_objects, args.repeats)
    result["machine"] = machine()
    result["command"] = "python " + " ".join(["benchmarks/measure_speed.py", *sys.argv[1:]])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    text = table(result) + (
        f"\n\n{result['objects']} objects on {result['fields']} fields"
        f" ({result['cp_measure_objects']} for cp_measure); CPU: {result['machine']['cpu']}"
        f" (lscpu model name), one thread; `{result['command']}`,"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    print(text)
    readme = args.readme.read_text() if args.readme.exists() else ""
    if MARKERS[0] in readme:
        head, rest = readme.split(MARKERS[0], 1)
        tail = rest.split(MARKERS[1], 1)[1]
        args.readme.write_text(f"{head}{MARKERS[0]}\n{text}\n{MARKERS[1]}{tail}")


if __name__ == "__main__":
    main()
