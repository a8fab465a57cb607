"""What the learned micronucleus score costs: decoding one field's maps with and without it.

The network runs once (the shipped ``micronuclei`` model, its own flips) on the first
validation image; then ``decode_objects`` (nuclei, micronuclei, score, parents) is timed on
its maps, best of ``--repeats``, with the model's settings and with the same settings less
the score (the same loose candidates, none dropped), on the image itself and on a 2160 x 2160
field of tiled copies of its maps (a large HCS field).

    python benchmarks/micronuclei_decode_speed.py --data ../shared/data/mnfinder \\
        --json benchmarks/results/micronuclei_decode_speed.json
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from measure_speed import timed  # noqa: E402

import cellseg_hcs as cs  # noqa: E402
from cellseg_hcs.field.micronuclei import decode_objects  # noqa: E402
from cellseg_hcs.io.images import read_image  # noqa: E402
from cellseg_hcs.settings import FieldSettings  # noqa: E402

FIELD = 2160


def tiled(array: np.ndarray, side: int) -> np.ndarray:
    """``array`` (…YX) repeated to ``side`` x ``side`` in its last two axes."""
    reps = (1,) * (array.ndim - 2) + tuple(-(-side // n) for n in array.shape[-2:])
    return np.tile(array, reps)[..., :side, :side]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", default="micronuclei")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    model = cs.load_model(args.model)
    with_score = model.info
    without = copy.deepcopy(with_score)
    for settings in without.object_postprocess.values():
        settings.pop("score", None)
    path = sorted((args.data / "images").glob("validation__*"))[0]
    pipeline = model.pipeline(FieldSettings(diameter="native"))
    maps, network_input = _maps_and_input(pipeline, path)
    rows = []
    for name, (field_maps, field_input) in {
        f"{maps.shape[-2]}x{maps.shape[-1]}": (maps, network_input),
        f"{FIELD}x{FIELD} (tiled copies)": (tiled(maps, FIELD), tiled(network_input, FIELD)),
    }.items():
        row = {"field": name}
        for label, info in (("with_score", with_score), ("without_score", without)):
            decode = functools.partial(decode_objects, field_maps, field_input, info)
            seconds = timed(decode, args.repeats)
            row[f"seconds_{label}"] = round(seconds, 3)
        rows.append(row)
        print(row)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": "python " + " ".join(sys.argv),
                    "model_hash": model.hash,
                    "image": path.name,
                    "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                    f"{platform.python_version()}",
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


def _maps_and_input(pipeline, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The network's maps of one image (the model's own flips) and its prepared input."""
    from cellseg_hcs.field.pipeline import FieldChannels

    prepared = pipeline.prepare(FieldChannels.from_array(read_image(path)))
    maps = pipeline.predict(prepared, 1.0)
    return np.asarray(maps), np.asarray(prepared.input)


if __name__ == "__main__":
    raise SystemExit(main())
