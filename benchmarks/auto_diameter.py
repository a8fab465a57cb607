"""How the automatic diameter was chosen: each validation image at many magnifications.

For every mnfinder validation image resampled by each factor, the model segments it at its
own scale and at the scale that brings the objects' measured median diameter to the model's
working diameter; the per-image F1 and AP of both, with the measured diameter, show where
resampling helps. The range in ``cellseg_hcs.field.scale.AUTO_RANGE`` was read from this
(validation only: the test split is never read here). The last columns are what
``--diameter auto`` does with that range.

    python benchmarks/auto_diameter.py --data ../shared/data/mnfinder \\
        --json benchmarks/results/auto_diameter_validation.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from accuracy import _magnify  # noqa: E402

import cellseg_hcs as cs  # noqa: E402
from cellseg_hcs.field.pipeline import FieldPipeline  # noqa: E402
from cellseg_hcs.field.scale import auto_scale, median_diameter  # noqa: E402
from cellseg_hcs.settings import FieldSettings  # noqa: E402
from cellseg_hcs.training.data import ImageMaskFolder  # noqa: E402
from cellseg_hcs.training.metrics import evaluate_pairs  # noqa: E402

FACTORS = (0.4, 0.6, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--factors", default=",".join(map(str, FACTORS)))
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/auto_diameter_validation.json")
    )
    args = parser.parse_args(argv)
    model = cs.load_model(args.model)
    runtime = model.runtime("auto")
    samples = list(
        ImageMaskFolder(args.data / "images", args.data / "nuclei_labels", pattern="validation__*")
    )

    def segment_at(image, diameter):
        settings = FieldSettings(model=args.model, diameter=diameter)
        return FieldPipeline(settings, model=model, runtime=runtime).run(image).labels

    rows = []
    for factor in [float(f) for f in args.factors.split(",")]:
        for sample in samples:
            changed = _magnify(factor)(sample) if factor != 1 else sample
            native = segment_at(changed.image, None)
            measured = median_diameter(native)
            resampled = segment_at(changed.image, measured or None)
            # What "auto" does, from the native pass already made (the pipeline's rule).
            scale, _ = auto_scale(native, model.info.working_diameter)
            working = model.info.working_diameter
            auto = native if scale == 1.0 else segment_at(changed.image, working / scale)
            row = {
                "factor": factor,
                "image": sample.name,
                "objects": int(changed.labels.max()),
                "measured_diameter": round(measured, 1),
                "auto_scale": scale,
            }
            for name, labels in (("native", native), ("resampled", resampled), ("auto", auto)):
                scores = evaluate_pairs([(changed.labels, labels)])
                row[f"{name}_f1"] = round(float(scores["f1"]), 3)
                row[f"{name}_ap"] = round(float(scores["ap"]), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "command": "python benchmarks/auto_diameter.py " + " ".join(argv or sys.argv[1:]),
                "model": args.model,
                "model_hash": model.hash,
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
