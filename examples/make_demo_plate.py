"""Build a small OME-Zarr HCS plate from the real images in examples/data/examplefly.

Four two-channel crops of Drosophila Kc167 cells (CellProfiler's ExampleFly images, BSD 3-Clause:
examples/data/examplefly/README.md) become a plate of two wells with two fields each, channels
``DNA`` (Hoechst) and ``Actin`` (the cells' cortex), NGFF 0.5:

    python examples/make_demo_plate.py examples/demo_plate.zarr
    cellseg-hcs run examples/demo_plate.zarr --out demo-results --cells-channel Actin

Runs offline in a few seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

from cellseg_hcs.io.convert import write_plate

IMAGES = Path(__file__).parent / "data" / "examplefly"
CHANNELS = ["DNA", "Actin"]
LAYOUT = {  # (well, site) -> crop, one file per channel: <crop>_<channel>.tif
    ("B02", 0): "01_POS002_y250_x250",
    ("B02", 1): "01_POS002_y600_x560",
    ("B03", 0): "01_POS076_y300_x560",
    ("B03", 1): "01_POS218_y560_x200",
}


def read_field(crop: str) -> np.ndarray:
    """One field's channels, CYX in the order of :data:`CHANNELS`."""
    return np.stack([tifffile.imread(IMAGES / f"{crop}_{channel}.tif") for channel in CHANNELS])


def make_demo_plate(out: str | Path, *, ngff_version: str = "0.5", overwrite: bool = False) -> Path:
    """Write the demo plate to ``out`` and return its path."""
    fields = {key: read_field(crop) for key, crop in LAYOUT.items()}
    return write_plate(
        out,
        fields,
        channel_names=CHANNELS,
        plate_name="demo",
        ngff_version=ngff_version,
        overwrite=overwrite,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the plate to write, e.g. demo_plate.zarr")
    parser.add_argument(
        "--ngff",
        default="0.5",
        choices=["0.5", "0.4"],
        help="NGFF version (0.5: zarr v3; 0.4: zarr v2)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args()
    from cellseg_hcs.errors import CellSegError
    from cellseg_hcs.io.plate import open_plate

    if args.out.exists() and not args.overwrite:
        try:  # the README's command run twice: keep the plate (and the labels a run wrote)
            open_plate(args.out)
        except CellSegError:
            pass  # not a plate: write_plate below refuses to touch it, in one sentence
        else:
            print(f"{args.out} exists; keeping it (--overwrite to build it afresh)")
            print(f"next: cellseg-hcs run {args.out} --out demo-results --cells-channel Actin")
            return
    try:
        path = make_demo_plate(args.out, ngff_version=args.ngff, overwrite=args.overwrite)
    except CellSegError as exc:
        raise SystemExit(f"Error: {exc}") from None
    print(
        f"wrote {path}: wells B02 and B03, 2 fields each, channels DNA and Actin (NGFF {args.ngff})"
    )
    print(f"next: cellseg-hcs run {path} --out demo-results --cells-channel Actin")


if __name__ == "__main__":
    main()
