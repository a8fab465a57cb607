"""Plate-run scaling: peak memory against plate size, throughput against worker count.

Builds plates of N wells (one field each, cycled from the four real mnfinder images in
examples/data, tiled to --size pixels), runs ``cellseg-hcs run`` on each as a subprocess
(the real command: local dask cluster, worker processes), samples the memory of the whole
process tree every 0.1 s, and reads fields and megapixels per second from the run's own
images.parquet. Results go to a JSON file and print as a markdown table.

    python benchmarks/plate_scale.py --wells 4 48 --workers 1 2 --json benchmarks/plate.json

Peak memory should not grow with the number of wells (the run keeps a bounded number of
fields in flight); throughput should grow with workers up to the number of cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
IMAGES = sorted((REPO / "examples" / "data" / "mnfinder").glob("*.tif"))


def make_plate(path: Path, wells: int, size: int) -> None:
    from cellseg_hcs.io.convert import write_plate

    sources = [tifffile.imread(p) for p in IMAGES]
    rows = "BCDEFGHIJKLMNO"
    names = [f"{rows[i // 12]}{i % 12 + 1:02d}" for i in range(wells)]

    def field(index: int):
        def pixels():
            image = sources[index % len(sources)]
            reps = -(-size // image.shape[0])
            return np.tile(image, (reps, reps))[:size, :size]

        return pixels

    write_plate(
        path,
        {(name, 0): field(i) for i, name in enumerate(names)},
        channel_names=["DNA"],
        ngff_version="0.5",
    )


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (Linux /proc)."""
    total = 0
    for proc in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{proc}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def run_once(plate: Path, out: Path, workers: int, model: str, features: str) -> dict:
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
        "--model",
        model,
        "--features",
        features,
        "--no-progress",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(process.stderr.read().decode()[-3000:])
    import pandas as pd

    images = pd.read_parquet(out / "images.parquet")
    manifest = json.loads((out / "run.json").read_text())
    busy = manifest["result"]["seconds"]
    megapixels = float((images["Height"] * images["Width"]).sum()) / 1e6
    return {
        "fields": len(images),
        "workers": workers,
        "wall_s": round(wall, 2),
        "run_s": busy,
        "fields_per_s": round(len(images) / busy, 3),
        "megapixels_per_s": round(megapixels / busy, 3),
        "peak_rss_mb": round(peak / 2**20),
        "objects": int(images.filter(like="Count_").sum().sum()),
        "failed": int((images["status"] == "failed").sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, nargs="+", default=[4, 48])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=1024, help="field side in pixels")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--features", default="minimal")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="plate-scale-") as tmp:
        for wells in args.wells:
            plate = Path(tmp) / f"plate{wells}.zarr"
            make_plate(plate, wells, args.size)
            for workers in args.workers:
                out = Path(tmp) / f"out-{wells}-{workers}"
                row = {
                    "wells": wells,
                    "size": args.size,
                    **run_once(plate, out, workers, args.model, args.features),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    machine = {
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "model": args.model,
        "model_hash": __import__("cellseg_hcs").load_model(args.model).hash,
        "features": args.features,
        "load_average": os.getloadavg(),
        "command": "python benchmarks/plate_scale.py " + " ".join(sys.argv[1:]),
    }
    print("\n| wells | fields | workers | run s | fields/s | MP/s | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['wells']} | {r['fields']} | {r['workers']} | {r['run_s']} | "
            f"{r['fields_per_s']} | {r['megapixels_per_s']} | {r['peak_rss_mb']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
