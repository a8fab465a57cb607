"""How big and how slow is the QC page of a whole plate: a 384-well plate run, then its report.

Builds a plate of ``--rows`` x ``--columns`` wells (16 x 24 by default), one field per well,
from the committed real images (examples/data/mnfinder and tests/data/mnfinder, cycled),
with a pyramid as a microscope export has one; runs it with the shipped model; then writes
its report ``--repeats`` times and records the page's size (and what it is made of) and the
time to write it, against the plate run's own time in the same process.

    python benchmarks/report_size.py                # ~5-10 min on 2 cores
    python benchmarks/report_size.py --rows 8 --columns 12   # a 96-well plate

Writes ``benchmarks/results/report_size.json`` (every number, the machine and the command).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import tifffile

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "examples/data/mnfinder").glob("*.tif")) + sorted(
    (ROOT / "tests/data/mnfinder/images").glob("*.tif")
)
RESULTS = ROOT / "benchmarks/results/report_size.json"


def build_plate(path: Path, rows: int, columns: int) -> Path:
    from cellseg_hcs.io.convert import write_plate

    images = [tifffile.imread(p) for p in IMAGES]
    fields = {}
    for r in range(rows):
        for c in range(columns):
            well = f"{chr(ord('A') + r)}{c + 1:02d}"
            fields[(well, 0)] = images[(r * columns + c) % len(images)]
    return write_plate(path, fields, channel_names=["DNA"], plate_name="bench", levels=2)


def page_parts(page: str) -> dict[str, int]:
    """Bytes of the page by what they are: plotly.js, field pictures, figures, the rest."""
    pictures = sum(len(m) for m in re.findall(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", page))
    figures = re.search(r"id='report-figures'>(.*?)</script>", page, re.S)
    plotly = re.search(r"id='plotly-gzip'>(.*?)</script>", page, re.S)
    parts = {
        "plotly_js_gzip_base64": len(plotly.group(1)) if plotly else 0,
        "pictures": pictures,
        "figures_json": len(figures.group(1)) if figures else 0,
    }
    parts["rest"] = len(page) - sum(parts.values())
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--columns", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="copy the page here")
    args = parser.parse_args()

    from cellseg_hcs.plate.run import run_plate
    from cellseg_hcs.report import write_report

    with tempfile.TemporaryDirectory() as folder:
        plate = build_plate(Path(folder) / "plate.zarr", args.rows, args.columns)
        started = time.perf_counter()
        result = run_plate(
            plate, Path(folder) / "out", features="minimal", workers=args.workers, progress=False
        )
        run_seconds = time.perf_counter() - started
        report_seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            page_path = write_report(result.out)
            report_seconds.append(time.perf_counter() - started)
        page = page_path.read_text(encoding="utf-8")
        if args.keep:
            args.keep.write_text(page, encoding="utf-8")
    wells = args.rows * args.columns
    parts = page_parts(page)
    report_median = sorted(report_seconds)[len(report_seconds) // 2]
    summary = {
        "wells": wells,
        "fields": len(result.images),
        "field_size": "512x512 (5 real mnfinder images, cycled), 2 pyramid levels",
        "page_bytes": len(page.encode("utf-8")),
        "page_mb": round(len(page.encode("utf-8")) / 1e6, 2),
        "parts_bytes": parts,
        "picture_kb_per_well": round(parts["pictures"] / wells / 1e3, 1),
        "report_seconds": [round(s, 2) for s in report_seconds],
        "report_seconds_median": round(report_median, 2),
        "plate_run_seconds": round(run_seconds, 1),
        "plate_run_seconds_include_the_report": True,
        "report_share_of_run": round(report_median / run_seconds, 3),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
