"""A plate run's stage split with ``--features full``: measurement against segmentation.

    python benchmarks/measure_plate.py --fields 8 --before ../main-older ../main-before

Builds a two-channel plate (one field per well) from the mnfinder images (the test split in
``../shared/data/mnfinder``, else ``tests/data/mnfinder``): ``DNA`` is an image, ``Other``
the next image of the same size (real pixels of another field), both 16-bit; with
``--channels 1``, DNA only, as the issue's held-out plate; with ``--montage 700x1100``,
fields of that shape cut from montages of the test images' 512 x 512 crops (about 80 nuclei
found a field against 47 in the whole images). Runs ``cellseg-hcs run PLATE --features full
--workers 1`` (``--workers N``) with the code of this checkout and, with ``--before
CHECKOUT [CHECKOUT...]``, with each of those checkouts' code (PYTHONPATH decides which
package is imported), and sums the per-field seconds each run wrote to images.parquet.
The issue's bar: sum(Seconds_Measure) <= 0.5 * sum(Seconds_Predict + Seconds_Postprocess).

Writes ``benchmarks/results/measure_plate.json`` and the table between the markers in
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from measure_speed import machine, mnfinder_folder, montage, tiles  # noqa: E402

MARKERS = ("<!-- measure-plate-table:start -->", "<!-- measure-plate-table:end -->")
STAGES = ("Seconds_Predict", "Seconds_Postprocess", "Seconds_Measure")


def make_plate(path: Path, fields: int, channels: int = 2) -> list[str]:
    """One field per well: DNA and, with two channels, Other (the next image of the same
    shape), uint16."""
    import tifffile

    from cellseg_hcs.io.convert import write_plate

    images = [
        tifffile.imread(p) for p in sorted((mnfinder_folder() / "images").glob("test__*.tif"))
    ]
    images = [i.astype(np.uint16) * (257 if i.dtype == np.uint8 else 1) for i in images]
    pairs = []
    for index, image in enumerate(images):
        partners = [o for o in images[index + 1 :] + images[:index] if o.shape == image.shape]
        if partners:
            pairs.append(np.stack([image, partners[0]][:channels]))
    rows = "BCDEFGH"
    wells = [f"{rows[i // 12]}{i % 12 + 1:02d}" for i in range(fields)]
    write_plate(
        path,
        {(well, 0): pairs[i % len(pairs)] for i, well in enumerate(wells)},
        channel_names=["DNA", "Other"][:channels],
    )
    return wells


def make_montage_plate(path: Path, fields: int, channels: int, shape: tuple[int, int]) -> list[str]:
    """One field per well, each ``shape`` cut from a montage of 512 x 512 crops of the test
    images (measure_speed's fields): denser fields than whole images, as in a screen."""
    from cellseg_hcs.io.convert import write_plate

    blocks = tiles(mnfinder_folder())
    height, width = shape
    rows = "BCDEFGH"
    wells = [f"{rows[i // 12]}{i % 12 + 1:02d}" for i in range(fields)]
    planes = {}
    for index, well in enumerate(wells):
        _, dna, other = montage(blocks, seed=index, side=max(shape))
        planes[(well, 0)] = np.stack([dna[:height, :width], other[:height, :width]][:channels])
    write_plate(path, planes, channel_names=["DNA", "Other"][:channels])
    return wells


def run_plate(checkout: Path, plate: Path, out: Path, workers: int = 1) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-c",
        "from cellseg_hcs.cli import main; main()",
        "run",
        str(plate),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--channel",
        "DNA",
        "--features",
        "full",
        "--no-progress",
    ]
    # cwd: `python -c` puts the working directory first on sys.path.
    done = subprocess.run(
        command, env=env, cwd=checkout, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"run with {checkout} failed:\n{done.stderr[-3000:]}")
    import pandas as pd

    images = pd.read_parquet(out / "images.parquet")
    sums = {stage: float(images[stage].sum()) for stage in STAGES}
    segmentation = sums["Seconds_Predict"] + sums["Seconds_Postprocess"]
    return {
        "checkout": str(checkout),
        "commit": subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip(),
        "fields": len(images),
        "objects": int(images.filter(like="Count_").sum().sum()),
        **{stage: round(value, 2) for stage, value in sums.items()},
        "measure_over_segmentation": round(sums["Seconds_Measure"] / segmentation, 3),
    }


def table(runs: list[dict]) -> str:
    lines = [
        "| code | fields | objects | sum Predict s | sum Postprocess s | sum Measure s "
        "| Measure / (Predict + Postprocess) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['label']} ({run['commit']}) | {run['fields']} | {run['objects']} "
            f"| {run['Seconds_Predict']} | {run['Seconds_Postprocess']} "
            f"| {run['Seconds_Measure']} | {run['measure_over_segmentation']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=8)
    parser.add_argument(
        "--channels",
        type=int,
        choices=(1, 2),
        default=2,
        help="1: DNA only, as the issue's held-out plate (no correlation between channels)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        nargs="+",
        default=[],
        help="checkouts to compare with (git worktrees of earlier commits), oldest first",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (1: the network and the measurement get every core in turn; "
        "as many as cores: each field's network and measurement get one)",
    )
    parser.add_argument(
        "--montage",
        metavar="HxW",
        default=None,
        help="fields of this shape cut from montages of 512 x 512 crops (e.g. 700x1100, the "
        "issue's held-out plate's), instead of whole images",
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/measure_plate.json")
    parser.add_argument("--readme", type=Path, default=REPO / "benchmarks/README.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        runs = []
        checkouts = [("before", checkout) for checkout in args.before]
        for label, checkout in [*checkouts, ("after", REPO)]:
            name = f"{label}-{len(runs)}"
            plate = Path(folder) / f"plate-{name}.zarr"  # a run writes labels into it
            if args.montage:
                shape = tuple(int(v) for v in args.montage.lower().split("x"))
                make_montage_plate(plate, args.fields, args.channels, shape)
            else:
                make_plate(plate, args.fields, args.channels)
            run = run_plate(checkout, plate, Path(folder) / f"out-{name}", args.workers)
            run["label"] = label
            runs.append(run)
            print(json.dumps(run), flush=True)
    result = {
        "runs": runs,
        "machine": machine(),
        "command": "python " + " ".join(["benchmarks/measure_plate.py", *sys.argv[1:]]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    text = table(runs) + (
        f"\n\nCPU: {result['machine']['cpu']} (lscpu model name); `{result['command']}`,"
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
