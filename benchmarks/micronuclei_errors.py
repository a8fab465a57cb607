"""Where a class model's false micronuclei are, and what a rule on enclosed ones would do.

    python benchmarks/micronuclei_errors.py --data ../shared/data/mnfinder --model MODEL \\
        --splits training,validation

Runs the model as users run it on the splits given (never name the test split while a
decision is open), matches its micronuclei to the true ones (IoU >= 0.3, the best true one
for each prediction) and sorts the unmatched ones by where they lie: overlapping a true
micronucleus, mostly inside a true nucleus, within 2 px of one, or apart. Then, for a few
cuts of the share of a predicted micronucleus' one-pixel ring that is predicted nucleus,
the precision, recall and F1 if the micronuclei above the cut were dropped (each
prediction matched on its own, so a rough guide to the pooled F1 of
``benchmarks/micronuclei.py``, not a replacement for it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from micronuclei import split_data  # noqa: E402

import cellseg_hcs as cs  # noqa: E402
from cellseg_hcs.field.pipeline import FieldPipeline  # noqa: E402
from cellseg_hcs.settings import FieldSettings  # noqa: E402
from cellseg_hcs.training.metrics import iou_matrix  # noqa: E402

CUTS = (0.0, 0.25, 0.5, 0.75)
KINDS = (
    "overlaps a true micronucleus (IoU < 0.3)",
    "mostly inside a true nucleus",
    "within 2 px of a true nucleus",
    "apart from every true nucleus",
)


def best_iou(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Each predicted object's best IoU with a true one (by label - 1)."""
    best = np.zeros(int(pred.max()))
    iou, _, _ = iou_matrix(truth, pred)
    if iou.size:
        best[np.unique(pred)[1:] - 1] = iou.max(axis=0)
    return best


def kind_of(
    mask: np.ndarray, true_nuclei: np.ndarray, near: np.ndarray, true_mn: np.ndarray
) -> str:
    if (mask & true_mn).any():
        return KINDS[0]
    if (mask & true_nuclei).sum() > 0.5 * mask.sum():
        return KINDS[1]
    return KINDS[2] if (mask & near).any() else KINDS[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--model", required=True)
    parser.add_argument("--splits", default="training,validation")
    args = parser.parse_args(argv)
    model = cs.load_model(args.model)
    pipeline = FieldPipeline(
        FieldSettings(model=args.model), model=model, runtime=model.runtime("auto", None)
    )
    kinds = dict.fromkeys(KINDS, 0)
    kept = {(cut, matched): 0 for cut in CUTS for matched in (True, False)}
    n_true = n_pred = 0
    for split in args.splits.split(","):
        for truth in split_data(args.data, split):
            result = pipeline.run(truth.image)
            pred = result.objects.get("Micronuclei")
            n_true += np.unique(truth.micronuclei).size - 1
            if pred is None or not pred.any():
                continue
            best = best_iou(truth.micronuclei, pred)
            true_nuclei = truth.nuclei > 0
            near = ndi.binary_dilation(true_nuclei, iterations=2)
            nuclei = result.labels > 0
            for number in np.unique(pred)[1:]:
                mask = pred == number
                n_pred += 1
                matched = bool(best[number - 1] >= 0.3)
                if not matched:
                    kinds[kind_of(mask, true_nuclei, near, truth.micronuclei > 0)] += 1
                ring = ndi.binary_dilation(mask) & ~mask
                enclosed = float(nuclei[ring].mean()) if ring.any() else 0.0
                for cut in CUTS:
                    kept[cut, matched] += enclosed <= cut
    unmatched = sum(kinds.values())
    print(f"{n_pred} predicted micronuclei, {unmatched} unmatched, {n_true} true ({args.splits})")
    for kind, count in kinds.items():
        print(f"  {kind}: {count} ({100 * count / max(unmatched, 1):.0f}%)")
    print("| dropped when the ring's nucleus share is above | precision | recall | F1 |")
    print("|---|---|---|---|")
    for cut in CUTS:
        tp, fp = kept[cut, True], kept[cut, False]
        precision, recall = tp / max(tp + fp, 1), tp / max(n_true, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        print(f"| {cut} | {precision:.3f} | {recall:.3f} | {f1:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
