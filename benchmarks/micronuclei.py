"""Micronuclei on mnfinder: detection, parent nuclei and counts per nucleus, and a baseline.

Scores (pooled over a split's images; see cellseg_hcs/training/micronuclei.py): micronucleus
precision / recall / F1 at IoU >= 0.3 and >= 0.5, the share of matched micronuclei given
their right parent nucleus, and the per-nucleus count agreement. Rows:

- ``cellseg-hcs``: the model as users run it (``--diameter auto``); its ``Micronuclei``
  object set and their parents (a model with a micronucleus class);
- ``classic``: Otsu foreground components outside the model's nuclei, 4-400 px, each given
  the nearest nucleus (for scale: issue #18 quotes F1 0.21-0.31 at IoU >= 0.3 on the test
  split);
- ``true objects, <rule>``: each parent rule applied to the true nuclei and micronuclei (how
  often the rule itself is right).

    python benchmarks/micronuclei.py --data ../shared/data/mnfinder --model MODEL \\
        --splits validation,training --json benchmarks/results/micronuclei_validation.json

``--choose`` picks the micronuclei's decoding (foreground threshold, peak height, minimum
size and score) by pooled F1 at IoU >= 0.3 (then parent accuracy), then the parent rule, on
the splits given, from maps predicted once, scored image by image (``MicronucleiTuner``),
and prints them (results/micronuclei_rule.md says on which splits). The test split is read
only when named in ``--splits``: after the decision.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cellseg_hcs as cs
from cellseg_hcs.field.pipeline import FieldPipeline
from cellseg_hcs.field.relations import PARENT_RULES, nearest_parents
from cellseg_hcs.settings import FieldSettings
from cellseg_hcs.training.micronuclei import (
    MicronucleiFolders,
    MicronucleiTuner,
    MicronucleusScores,
    classic_micronuclei,
)

KEYS = (
    "f1@0.3",
    "precision@0.3",
    "recall@0.3",
    "f1@0.5",
    "parent_accuracy",
    "parents_scored",
    "count_agreement",
    "count_mean_abs_difference",
    "fraction_with_micronuclei",
    "fraction_with_micronuclei_predicted",
    "n_true",
    "n_pred",
)


def split_data(root: Path, split: str) -> MicronucleiFolders:
    return MicronucleiFolders(
        root / "images",
        root / "nuclei_labels",
        root / "micronuclei_labels",
        root / "micronuclei_parent",
        pattern=f"{split}__*",
    )


def predicted(model, pipeline: FieldPipeline, truth) -> dict:
    """The model's objects, parents and maps for one image, as users run it."""
    result = pipeline.run(truth.image)
    return {
        "nuclei": result.labels,
        "micronuclei": result.objects.get("Micronuclei"),
        "parents": result.parents.get(("Micronuclei", result.primary)),
        "maps": result.maps,
    }


def summary(scores: MicronucleusScores) -> dict:
    out = scores.summary()
    return {k: round(float(out[k]), 4) for k in KEYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--splits", default="validation", help="comma-separated splits")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--choose", action="store_true", help="choose the decoding (see above)")
    parser.add_argument(
        "--flips", type=int, default=None, help="test-time flips (1, 2, 4 or 8; the model's own)"
    )
    args = parser.parse_args(argv)

    model = cs.load_model(args.model)
    settings = FieldSettings(
        model=args.model, backend=args.backend, probabilities=True, flips=args.flips
    )
    runtime = model.runtime(args.backend, None, **settings.runtime_options)
    pipeline = FieldPipeline(settings, model=model, runtime=runtime)
    has_micronuclei = "Micronuclei" in model.info.class_objects.values()
    rows = []
    # The choice scores every decoding image by image (no image's maps are kept).
    tuner = MicronucleiTuner(model) if args.choose and has_micronuclei else None
    for split in args.splits.split(","):
        data = split_data(args.data, split)
        methods = {name: MicronucleusScores() for name in ("cellseg-hcs", "classic")}
        rules = {name: MicronucleusScores() for name in PARENT_RULES}
        started = time.perf_counter()
        for truth in data:
            found = predicted(model, pipeline, truth)
            if tuner is not None:
                tuner.add(truth, found["maps"], found["nuclei"])
            true_objects = (truth.nuclei, truth.micronuclei, truth.parents)
            if has_micronuclei:
                methods["cellseg-hcs"].add(
                    *true_objects, found["nuclei"], found["micronuclei"], found["parents"]
                )
            classic = classic_micronuclei(truth.image, found["nuclei"])
            methods["classic"].add(
                *true_objects, found["nuclei"], classic, nearest_parents(classic, found["nuclei"])
            )
            for name, rule in PARENT_RULES.items():
                rules[name].add(
                    *true_objects,
                    truth.nuclei,
                    truth.micronuclei,
                    rule(truth.micronuclei, truth.nuclei),
                )
        seconds = (time.perf_counter() - started) / len(data)
        for name, scores in methods.items():
            if name == "cellseg-hcs" and not has_micronuclei:
                continue
            rows.append({"data": f"mnfinder {split}", "method": name, **summary(scores)})
            if name == "cellseg-hcs":
                rows[-1]["seconds_per_image"] = round(seconds, 3)
            print(json.dumps(rows[-1]), flush=True)
        for name, scores in rules.items():
            row = {"data": f"mnfinder {split}", "method": f"true objects, {name} parent"}
            rows.append({**row, "parent_accuracy": round(scores.summary()["parent_accuracy"], 4)})
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "command": "python benchmarks/micronuclei.py " + " ".join(argv or sys.argv[1:]),
        "model": str(args.model),
        "model_hash": model.hash,
        "flips": runtime.flips,
        "micronuclei_settings": model.info.object_postprocess.get("Micronuclei", {}),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "rows": rows,
    }
    if tuner is not None:
        result["chosen"] = choose(tuner)
        print("chosen:", json.dumps(result["chosen"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(rows))
    return 0


def choose(tuner: MicronucleiTuner) -> dict:
    """The micronuclei decoding and parent rule chosen on the images the tuner scored
    (:class:`~cellseg_hcs.training.micronuclei.MicronucleiTuner`)."""
    tuned = tuner.choose()
    return {
        "settings": tuned["settings"],
        "scores": {k: round(float(tuned["scores"][k]), 4) for k in KEYS},
        "parent_accuracy_by_rule": tuned["parent_accuracy_by_rule"],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | method | F1@0.3 | P@0.3 | R@0.3 | F1@0.5 | parent | count agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.get(k) for k in ("f1@0.3", "precision@0.3", "recall@0.3", "f1@0.5")]
        cells += [r.get("parent_accuracy"), r.get("count_agreement")]
        text = " | ".join("" if c is None else f"{c:.3f}" for c in cells)
        lines.append(f"| {r['data']} | {r['method']} | {text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
