"""Build a small OME-Zarr HCS plate from the real images in examples/data/.

Two demos, each a plate of two wells with two fields each (NGFF 0.5), built offline in a few
seconds:

``fly`` (the default): four two-channel crops of Drosophila Kc167 cells (CellProfiler's
ExampleFly images, BSD 3-Clause: examples/data/examplefly/README.md), channels ``DNA``
(Hoechst) and ``Actin`` (the cells' cortex):

    python examples/make_demo_plate.py examples/demo_plate.zarr
    cellseg-hcs run examples/demo_plate.zarr --out demo-results --cells-channel Actin

``micronuclei``: four Hoechst images of HFF cells with micronuclei (the mnfinder package's
images, MIT: examples/data/mnfinder/LICENSE.md), channel ``DNA``. The shipped opt-in model
``micronuclei`` finds their nuclei and micronuclei, with each micronucleus' parent nucleus
and ``Count_Micronuclei`` (the default ``nuclei`` finds the nuclei only):

    python examples/make_demo_plate.py examples/mn_plate.zarr --demo micronuclei
    cellseg-hcs run examples/mn_plate.zarr --out mn-results --model micronuclei
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from cellseg_hcs.io.convert import write_plate

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Demo:
    """One demo plate: where its images are, its channels and wells, and what to run on it."""

    folder: Path
    plate_name: str
    channels: tuple[str, ...]
    layout: dict[tuple[str, int], str]  # (well, site) -> the field's file stem
    per_channel_files: bool  # <stem>_<channel>.tif, else one single-channel <stem>.tif
    next_command: str  # what to run on it; {plate} is the plate's path

    def read_field(self, stem: str) -> np.ndarray:
        """One field's channels, CYX in the order of :attr:`channels`."""
        if not self.per_channel_files:
            return tifffile.imread(self.folder / f"{stem}.tif")[np.newaxis]
        return np.stack([tifffile.imread(self.folder / f"{stem}_{c}.tif") for c in self.channels])


DEMOS = {
    "fly": Demo(
        folder=DATA / "examplefly",
        plate_name="demo",
        channels=("DNA", "Actin"),
        layout={
            ("B02", 0): "01_POS002_y250_x250",
            ("B02", 1): "01_POS002_y600_x560",
            ("B03", 0): "01_POS076_y300_x560",
            ("B03", 1): "01_POS218_y560_x200",
        },
        per_channel_files=True,
        next_command="cellseg-hcs run {plate} --out demo-results --cells-channel Actin",
    ),
    "micronuclei": Demo(
        folder=DATA / "mnfinder",
        plate_name="demo-micronuclei",
        channels=("DNA",),
        layout={
            ("B02", 0): "HFF-revt-01_s5",
            ("B02", 1): "HFF-revt-01_s17",
            ("B03", 0): "HFF-revt-01_s18",
            ("B03", 1): "HFF-revt-01_s19",
        },
        per_channel_files=False,
        next_command="cellseg-hcs run {plate} --out mn-results --model micronuclei",
    ),
}


def make_demo_plate(
    out: str | Path, *, demo: str = "fly", ngff_version: str = "0.5", overwrite: bool = False
) -> Path:
    """Write the demo plate ``demo`` (a name in :data:`DEMOS`) to ``out``; return its path."""
    spec = DEMOS[demo]
    fields = {key: spec.read_field(stem) for key, stem in spec.layout.items()}
    return write_plate(
        out,
        fields,
        channel_names=list(spec.channels),
        plate_name=spec.plate_name,
        ngff_version=ngff_version,
        overwrite=overwrite,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the plate to write, e.g. demo_plate.zarr")
    parser.add_argument(
        "--demo",
        default="fly",
        choices=sorted(DEMOS),
        help="fly: DNA and Actin, for nuclei, cells and cytoplasm (default); "
        "micronuclei: DNA of HFF cells with micronuclei, for --model micronuclei",
    )
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

    spec = DEMOS[args.demo]
    if args.out.exists() and not args.overwrite:
        try:  # the README's command run twice: keep the plate (and the labels a run wrote)
            open_plate(args.out)
        except CellSegError:
            pass  # not a plate: write_plate below refuses to touch it, in one sentence
        else:
            print(f"{args.out} exists; keeping it (--overwrite to build it afresh)")
            print(f"next: {spec.next_command.format(plate=args.out)}")
            return
    try:
        path = make_demo_plate(
            args.out, demo=args.demo, ngff_version=args.ngff, overwrite=args.overwrite
        )
    except CellSegError as exc:
        raise SystemExit(f"Error: {exc}") from None
    wells = " and ".join(sorted({well for well, _ in spec.layout}))
    channels = ("channels " if len(spec.channels) > 1 else "channel ") + " and ".join(spec.channels)
    print(f"wrote {path}: wells {wells}, 2 fields each, {channels} (NGFF {args.ngff})")
    print(f"next: {spec.next_command.format(plate=path)}")


if __name__ == "__main__":
    main()
