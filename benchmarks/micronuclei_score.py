"""Fit a learned score for a class model's micronuclei, out of fold on annotated images.

    python benchmarks/micronuclei_score.py --data ../shared/data/mnfinder --model micronuclei \\
        --splits training,validation --json results/micronuclei_score.json [--out MODEL]

The protocol of the micronuclei rule's tenth and eleventh attempts
(``results/micronuclei_rule.md``). The model runs as users run it (its own flips unless
``--flips``); its micronuclei are decoded as candidates with the ``--candidates`` settings
(default: the loose decoding of the eleventh attempt; no ring limit, no score); every
candidate gets the features of ``cellseg_hcs.field.object_score.FEATURES`` and the label
"matches a true micronucleus at IoU >= 0.3". The images, sorted by name, fall in 5 folds
(image i in fold i mod 5); for each fold a logistic regression (scikit-learn, standardised
features, ``--C``) is fitted on the other four and scores it, with the cut chosen from
``CUTS`` on those four's own out-of-fold figures (nested). The out-of-fold micronuclei are
scored as ``benchmarks/micronuclei.py`` scores (pooled F1 at IoU >= 0.3, right parent),
pooled and by split, beside the model's own decoding. Finally the regression is fitted on
every image, its cut chosen on the pooled out-of-fold probabilities; with ``--out`` the
model is written there with the candidates' decoding and the score as its micronuclei
settings (the others it had kept). Run it on the model before its score: "the model's own
decoding" is the model as given, so a model that already carries a score would be scored
in sample. Never name the test split while a decision is open.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from micronuclei import split_data  # noqa: E402

import cellseg_hcs as cs  # noqa: E402
from cellseg_hcs.field.micronuclei import decode_objects  # noqa: E402
from cellseg_hcs.field.object_score import FEATURES, ObjectScore, object_features  # noqa: E402
from cellseg_hcs.field.pipeline import FieldPipeline  # noqa: E402
from cellseg_hcs.field.relations import PARENT_RULES, keep_objects  # noqa: E402
from cellseg_hcs.settings import FieldSettings  # noqa: E402
from cellseg_hcs.training.metrics import matched_pairs  # noqa: E402
from cellseg_hcs.training.micronuclei import MicronucleusScores, best_parent_rule  # noqa: E402

SET = "Micronuclei"
FOLDS = 5
CUTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: The eleventh attempt's candidates: the loosest values of MICRONUCLEI_GRID (bar min_size 2).
LOOSE = {
    "class_threshold": 0.3,
    "foreground_threshold": 0.4,
    "peak_height": 0.2,
    "min_size": 3,
    "min_score": 0.0,
    "max_nucleus_ring": None,
    "score": None,
}
KEYS = ("f1@0.3", "precision@0.3", "recall@0.3", "f1@0.5", "parent_accuracy", "n_true", "n_pred")


def candidates(model, pipeline, truth, overrides: dict) -> dict:
    """One image: the model's nuclei, its own micronuclei, and the candidates with features."""
    info = model.info
    result = pipeline.run(truth.image)
    prepared = model.prepare(truth.image)
    own = {info.object_name: pipeline.settings.postprocess_overrides}
    decoded = decode_objects(result.maps, prepared, info, {**own, SET: overrides})
    nuclei, children = decoded.labels[info.object_name], decoded.labels[SET]
    if not np.array_equal(nuclei, result.labels):
        raise RuntimeError(f"{truth.name}: the nuclei decoded again differ from the pipeline's.")
    features = object_features(children, nuclei, result.maps, prepared, info, SET, tuple(FEATURES))
    _, matched, _ = matched_pairs(truth.micronuclei, children, 0.3)
    label = np.zeros(int(children.max()), bool)
    label[matched - 1] = True
    return {
        "truth": truth,
        "nuclei": nuclei,
        "own": (result.objects.get(SET), result.parents.get((SET, result.primary))),
        "children": children,
        "parents": {name: rule(children, nuclei) for name, rule in PARENT_RULES.items()},
        "features": features,
        "label": label,
    }


def scores(images: list[dict], keep: dict[str, np.ndarray] | None, rule: str = "boundary") -> dict:
    """Pooled micronucleus scores of the kept candidates (None: the model's own decoding),
    their parents by ``rule``."""
    pooled = MicronucleusScores()
    for image in images:
        truth = image["truth"]
        if keep is None:
            children, parents = image["own"]
        else:
            kept = keep[truth.name]
            children, parents = keep_objects(image["children"], kept), image["parents"][rule][kept]
        pooled.add(
            truth.nuclei, truth.micronuclei, truth.parents, image["nuclei"], children, parents
        )
    out = pooled.summary()
    return {k: round(float(out[k]), 4) for k in KEYS}


def fit(images: list[dict], C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([image["features"] for image in images])
    labels = np.concatenate([image["label"] for image in images])
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(
        features, labels
    )


def probabilities(regression, images: list[dict]) -> dict[str, np.ndarray]:
    return {
        image["truth"].name: regression.predict_proba(image["features"])[:, 1]
        if len(image["features"])
        else np.zeros(0)
        for image in images
    }


def best_cut(images: list[dict], probability: dict[str, np.ndarray]) -> float:
    """The cut of CUTS with the best pooled F1 at IoU >= 0.3 (the first of equals)."""
    f1 = [scores(images, {k: p >= cut for k, p in probability.items()})["f1@0.3"] for cut in CUTS]
    return CUTS[int(np.argmax(f1))]


def out_of_fold(images: list[dict], C: float) -> tuple[dict[str, np.ndarray], dict, list]:
    """Each image's candidates kept out of fold (nested cuts), its probabilities, the cuts."""
    fold = {image["truth"].name: i % FOLDS for i, image in enumerate(images)}
    keep, probability, cuts = {}, {}, []
    for k in range(FOLDS):
        inner = [image for image in images if fold[image["truth"].name] != k]
        outer = [image for image in images if fold[image["truth"].name] == k]
        inner_probability: dict[str, np.ndarray] = {}
        for j in sorted({fold[image["truth"].name] for image in inner}):
            held = [image for image in inner if fold[image["truth"].name] == j]
            rest = [image for image in inner if fold[image["truth"].name] != j]
            inner_probability.update(probabilities(fit(rest, C), held))
        cut = best_cut(inner, inner_probability)
        cuts.append(cut)
        outer_probability = probabilities(fit(inner, C), outer)
        probability.update(outer_probability)
        keep.update({name: p >= cut for name, p in outer_probability.items()})
    return keep, probability, cuts


def as_score(regression, cut: float) -> ObjectScore:
    scaler, logistic = regression[0], regression[1]
    return ObjectScore(
        tuple(FEATURES),
        tuple(float(v) for v in scaler.mean_),
        tuple(float(v) for v in scaler.scale_),
        tuple(float(v) for v in logistic.coef_[0]),
        float(logistic.intercept_[0]),
        float(cut),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", default="micronuclei")
    parser.add_argument("--splits", default="training,validation", help="comma-separated")
    parser.add_argument("--flips", type=int, default=None, help="1, 2, 4 or 8 (the model's own)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument(
        "--candidates", type=json.loads, default=LOOSE, help="the candidates' decoding (JSON)"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the scored model here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    model = cs.load_model(args.model)
    settings = FieldSettings(model=args.model, probabilities=True, flips=args.flips)
    runtime = model.runtime("auto", None, **settings.runtime_options)
    pipeline = FieldPipeline(settings, model=model, runtime=runtime)
    images = []
    for split in args.splits.split(","):
        for truth in split_data(args.data, split):
            images.append(candidates(model, pipeline, truth, args.candidates))
    images.sort(key=lambda image: image["truth"].name)
    keep, probability, cuts = out_of_fold(images, args.C)
    everything = {image["truth"].name: np.ones(image["label"].size, bool) for image in images}
    by_split = {
        split: [image for image in images if image["truth"].name.startswith(f"{split}__")]
        for split in args.splits.split(",")
    }
    report: dict = {
        "command": "python "
        + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "model": args.model,
        "model_hash": model.hash,
        "flips": runtime.flips,
        "C": args.C,
        "candidates": args.candidates,
        "features": list(FEATURES),
        "cuts_by_fold": cuts,
        "candidate_count": int(sum(image["label"].size for image in images)),
        "pooled": {
            "model's own decoding": scores(images, None),
            "every candidate": scores(images, everything),
            "learned score, out of fold": scores(images, keep),
        },
    }
    for split, members in by_split.items():
        report[split] = {
            "model's own decoding": scores(members, None),
            "learned score, out of fold": scores(members, keep),
        }
    report["parent_accuracy_by_rule, out of fold"] = {
        rule: scores(images, keep, rule)["parent_accuracy"] for rule in PARENT_RULES
    }
    by_rule = report["parent_accuracy_by_rule, out of fold"]
    report["parent_rule"] = best_parent_rule(by_rule)  # as MicronucleiTuner.choose
    cut = best_cut(images, probability)
    score = as_score(fit(images, args.C), cut)
    report["score"] = score.to_dict()
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.out:
        own = model.info.object_postprocess.get(SET, {})
        decoding = {k: v for k, v in {**own, **args.candidates}.items() if v is not None}
        decoding["parent_rule"] = report["parent_rule"]
        decoding["score"] = score.to_dict()
        model.info.object_postprocess = {**model.info.object_postprocess, SET: decoding}
        model.save(args.out)
        print(f"wrote {args.out} ({model.hash})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
