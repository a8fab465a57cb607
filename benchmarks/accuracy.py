"""Accuracy of a model on the mnfinder splits, its robustness, and the classic baseline.

Scores (pooled over images; instance F1 at IoU 0.5, DSB AP over IoU 0.5:0.95, COCO AP)
on the validation and test splits, then on the test split changed the ways other labs'
images differ from it: magnification (0.5x, 0.75x, 1.5x, 2x), bit depth (8-bit), a dim
exposure with shot noise, and an uneven background. The classic baseline (Otsu +
distance-transform declumping, benchmarks/classic.py) runs on the same images.

    python benchmarks/accuracy.py --data ../shared/data/mnfinder --model nuclei \
        --json benchmarks/accuracy.json

The test split is only ever read here, never by training or model selection; to compare
candidate models, ``--validation-only`` scores the validation split and its changed images
and does not read the test split (``--with-training`` adds the training split, a larger
selection set for post-processing: see results/merge_alike_rule.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage.transform import rescale

sys.path.insert(0, str(Path(__file__).parent))

import classic  # noqa: E402

import cellseg_hcs as cs  # noqa: E402
from cellseg_hcs.field.pipeline import FieldPipeline  # noqa: E402
from cellseg_hcs.settings import FieldSettings, parse_diameter  # noqa: E402
from cellseg_hcs.training.data import ImageMaskFolder, Sample  # noqa: E402
from cellseg_hcs.training.metrics import evaluate_pairs  # noqa: E402

KEYS = (
    "f1",
    "precision",
    "recall",
    "ap",
    "coco_ap",
    "coco_ap50",
    "coco_ap75",
    "mean_matched_iou",
    "pixel_iou",
)


def _magnify(factor: float) -> Callable[[Sample], Sample]:
    def change(sample: Sample) -> Sample:
        image = rescale(
            sample.image.astype(np.float32),
            factor,
            order=1,
            anti_aliasing=True,
            preserve_range=True,
        )
        labels = rescale(
            sample.labels, factor, order=0, anti_aliasing=False, preserve_range=True
        ).astype(np.int32)
        return Sample(image.astype(sample.image.dtype), labels, sample.name)

    return change


def _eight_bit(sample: Sample) -> Sample:
    image = sample.image.astype(np.float64)
    image = 255 * (image - image.min()) / max(np.ptp(image), 1)
    return Sample(image.astype(np.uint8), sample.labels, sample.name)


def _dim_and_noisy(sample: Sample) -> Sample:
    rng = np.random.default_rng(0)
    image = sample.image.astype(np.float64)
    photons = 30 * (image - image.min()) / max(np.ptp(image), 1) + 5  # ~35 photons at peak
    return Sample(rng.poisson(photons).astype(np.uint16), sample.labels, sample.name)


def _uneven_background(sample: Sample) -> Sample:
    image = sample.image.astype(np.float64)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    ramp = (xx / image.shape[1] + yy / image.shape[0]) / 2
    image = image + 0.5 * np.ptp(image) * ramp
    return Sample(image.astype(np.float32), sample.labels, sample.name)


CHANGES: dict[str, Callable[[Sample], Sample]] = {
    "magnification 0.5x": _magnify(0.5),
    "magnification 0.75x": _magnify(0.75),
    "magnification 1.5x": _magnify(1.5),
    "magnification 2x": _magnify(2.0),
    "8-bit": _eight_bit,
    "dim + shot noise": _dim_and_noisy,
    "uneven background": _uneven_background,
}


def score(segment: Callable[[np.ndarray], np.ndarray], samples: list[Sample]) -> dict:
    started = time.perf_counter()
    pairs = [(s.labels, segment(s.image)) for s in samples]
    seconds = time.perf_counter() - started
    scores = evaluate_pairs(pairs)
    out = {k: round(float(scores[k]), 4) for k in KEYS}
    out["seconds_per_image"] = round(seconds / len(samples), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/accuracy.json"))
    parser.add_argument("--no-robustness", action="store_true")
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="Score the validation split and its changed images only, never "
        "reading the test split: for choosing between candidate models.",
    )
    parser.add_argument(
        "--with-training",
        action="store_true",
        help="Score the training split too: the model has seen it, but it is "
        "ten times the validation split for choosing post-processing.",
    )
    parser.add_argument(
        "--diameters",
        default="",
        help="Also score the model with these --diameter values "
        "(comma-separated), e.g. native,60: the image's own scale, and "
        "the accuracy cost of the fast mode.",
    )
    parser.add_argument(
        "--backend", default="auto", help="inference backend (auto, torch, onnxruntime, tensorrt)"
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "fp16", "bf16"),
        help="the torch backend's precision, e.g. bf16: its accuracy cost",
    )
    parser.add_argument(
        "--flips",
        type=int,
        default=None,
        help="test-time flips (1, 2, 4 or 8; default: the model's own): their accuracy gain",
    )
    args = parser.parse_args(argv)

    model = cs.load_model(args.model)
    options = {"precision": args.precision} if args.precision else {}
    options["flips"] = args.flips  # None: the model's own
    runtime = model.runtime(args.backend, None, **options)
    images, masks = args.data / "images", args.data / "nuclei_labels"
    names = ("validation",) if args.validation_only else ("validation", "test")
    names = ("training", *names) if args.with_training else names
    splits = {name: list(ImageMaskFolder(images, masks, pattern=f"{name}__*")) for name in names}
    robustness_split = "validation" if args.validation_only else "test"

    def cellseg(image: np.ndarray, diameter: float | str | None = "auto") -> np.ndarray:
        settings = FieldSettings(
            model=args.model, backend=args.backend, diameter=diameter, flips=args.flips
        )
        return FieldPipeline(settings, model=model, runtime=runtime).run(image).labels

    methods = {"cellseg-hcs": cellseg, "classic (Otsu + watershed)": classic.segment}
    for text in [d for d in args.diameters.split(",") if d]:
        diameter = parse_diameter(text)
        methods[f"cellseg-hcs --diameter {text}"] = lambda image, d=diameter: cellseg(image, d)
    rows = []
    for split, samples in splits.items():
        for method, segment in methods.items():
            rows.append({"data": f"mnfinder {split}", "method": method, **score(segment, samples)})
            print(json.dumps(rows[-1]), flush=True)
    if not args.no_robustness:
        for change, apply in CHANGES.items():
            changed = [apply(s) for s in splits[robustness_split]]
            for method, segment in methods.items():
                rows.append(
                    {
                        "data": f"mnfinder {robustness_split}, {change}",
                        "method": method,
                        **score(segment, changed),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": "python benchmarks/accuracy.py " + " ".join(argv or sys.argv[1:]),
        "model": str(args.model),
        "model_hash": model.hash,
        "runtime": runtime.describe(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "rows": rows,
    }
    args.json.write_text(json.dumps(result, indent=2))
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | method | F1@0.5 | AP@[.5:.95] | COCO AP | AP50 | AP75 | s/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['method']} | {r['f1']:.3f} | {r['ap']:.3f} | "
            f"{r['coco_ap']:.3f} | {r['coco_ap50']:.3f} | {r['coco_ap75']:.3f} | "
            f"{r['seconds_per_image']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
