"""Train the shipped default model ``nuclei`` on the mnfinder training split.

This is the recipe behind ``cellseg_hcs/weights/nuclei.safetensors``: a model from scratch,
then the same model fine-tuned from it (see its MODEL_CARD.md):

    python examples/train_default_model.py --data ../shared/data/mnfinder \
        --out cellseg_hcs/weights/nuclei.safetensors --minutes 90 --threads 1 --target distance
    python examples/train_default_model.py --data ../shared/data/mnfinder \
        --out cellseg_hcs/weights/nuclei.safetensors --minutes 125 --threads 2 \
        --learning-rate 1e-3 --target distance \
        --start-from cellseg_hcs/weights/nuclei.safetensors

Each run ends by choosing the post-processing on the validation split (kept only where its
AP beats the model's own settings; with ``--micronuclei``, the micronuclei's decoding and
parent rule on the training and validation splits together). ``--choose-only MODEL --out OUT``
makes only these choices, for a model trained before; ``--train-only`` skips them (a GPU
run: ``--device cuda --loaders 8 --train-only``, the choices made afterwards on the CPU).

With ``--micronuclei`` the model learns two classes, nucleus and micronucleus (mnfinder's
``nuclei_labels`` and ``micronuclei_labels``), and decodes micronuclei as an object set of
their own, ``Micronuclei``; fine-tuned from a model without classes, its head gains the two
class channels (initialised to zero):

    python examples/train_default_model.py --data ../shared/data/mnfinder \
        --out /tmp/classes2/nuclei_mn.safetensors --minutes 165 --threads 1 \
        --learning-rate 7e-4 --target distance --average 0.999 --keep last \
        --start-from nuclei --micronuclei

Training images: ``training__*`` (30); model selection and post-processing thresholds:
``validation__*`` (3). The test split is never read here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cellseg_hcs as cs
from cellseg_hcs.training.augment import AugmentSettings
from cellseg_hcs.training.tune import tune_postprocess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the mnfinder folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=95.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--stem", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for training (1 on a shared 2-core machine)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU when PyTorch sees one), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--loaders",
        type=int,
        default=0,
        help="processes preparing the batches (0: one thread; 8 or so on a GPU)",
    )
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument(
        "--average",
        type=float,
        default=0.0,
        help="keep an exponential moving average of the weights (e.g. 0.999)",
    )
    parser.add_argument(
        "--target",
        default="centre",
        choices=["centre", "distance"],
        help="what the second output learns (see cellseg_hcs.training.targets)",
    )
    parser.add_argument(
        "--keep",
        default="best",
        choices=["best", "last"],
        help="keep the best validation epoch or the last one",
    )
    parser.add_argument(
        "--start-from",
        default=None,
        help="fine-tune this model (name or file) instead of starting afresh",
    )
    parser.add_argument(
        "--touching",
        type=float,
        default=0.0,
        help="chance that pasted nuclei are pushed against existing ones",
    )
    parser.add_argument(
        "--pasted-gain",
        default="1,1",
        help="range of the brightness factor of pasted nuclei, e.g. 0.6,1.8",
    )
    parser.add_argument(
        "--density", type=float, default=0.3, help="chance of pasting annotated nuclei into a patch"
    )
    parser.add_argument(
        "--choose-only",
        default=None,
        help="do not train: choose the post-processing (and micronuclei decoding) of this "
        "trained model file again and save it to --out",
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="save the trained model and stop, leaving the choices to --choose-only (on a "
        "lent GPU, whose minutes are few, the choices run on the CPU afterwards)",
    )
    parser.add_argument(
        "--micronuclei",
        action="store_true",
        help="learn nucleus and micronucleus classes; micronuclei become their own objects",
    )
    parser.add_argument(
        "--foreground-by-class",
        action="store_true",
        help="with --micronuclei: weigh micronucleus pixels in the foreground and second-map "
        "losses by their class weight (about 5.6x), not only in the class loss",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    images, masks = args.data / "images", args.data / "nuclei_labels"
    training = cs.data.ImageMaskFolder(images, masks, pattern="training__*")
    class_objects = {}
    if args.micronuclei:
        training = cs.data.ClassMaskFolders(
            images,
            {"nucleus": masks, "micronucleus": args.data / "micronuclei_labels"},
            pattern="training__*",
        )
        class_objects = {"micronucleus": "Micronuclei"}
    validation = cs.data.ImageMaskFolder(images, masks, pattern="validation__*")
    if args.choose_only:  # a trained model: choose its settings again with this code
        model = cs.load_model(args.choose_only)
        choose_settings(model, args.data, validation, args.out, bool(model.info.classes))
        return 0
    command = "python " + " ".join(["examples/train_default_model.py", *(argv or sys.argv[1:])])
    model = cs.train(
        training,
        validation=validation,
        epochs=1000,
        time_limit=args.minutes * 60,
        width=args.width,
        depth=args.depth,
        stem=args.stem,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        loaders=args.loaders,
        learning_rate=args.learning_rate,
        start_from=args.start_from,
        average=args.average,
        target=args.target,
        keep=args.keep,
        class_objects=class_objects,
        foreground_by_class=args.foreground_by_class,
        augment=AugmentSettings(
            density_probability=args.density,
            touching_probability=args.touching,
            pasted_gain=tuple(float(v) for v in args.pasted_gain.split(",")),
        ),
        out=args.out,
        description={
            "data": "mnfinder 1.2.3 training split (30 images), MIT license"
            + (" (nuclei and micronuclei)" if args.micronuclei else ""),
            "validation": "mnfinder validation split (3 images)",
            "command": command,
        },
    )
    if not args.train_only:
        choose_settings(model, args.data, validation, args.out, args.micronuclei)
    return 0


def choose_settings(model, data: Path, validation, out: Path, micronuclei: bool) -> None:
    """After training: the nuclei's post-processing on validation (the tuned settings only
    where their AP beats the model's own), then with ``micronuclei`` the micronuclei's
    decoding and parent rule on training + validation; saved to ``out`` after each."""
    from cellseg_hcs.training.evaluate import evaluate_model

    own = evaluate_model(model, validation)
    best = tune_postprocess(model, validation)
    if (best["scores"]["ap"], best["scores"]["f1"]) > (own["ap"], own["f1"]):
        model.info.postprocess.update(best["settings"])
    else:
        best = {"settings": {}, "scores": own}
    model.info.metrics.update(
        {
            f"val_{k}": v
            for k, v in best["scores"].items()
            if k in ("f1", "ap", "precision", "recall")
        }
    )
    model.save(out)
    print(
        "tuned post-processing:",
        best["settings"] or "the model's own",
        "validation:",
        best["scores"]["f1"],
        best["scores"]["ap"],
    )
    if micronuclei:
        tuned = choose_micronuclei(model, data)
        model.info.object_postprocess["Micronuclei"] = tuned["settings"]
        model.info.metrics.update(
            {f"micronuclei_{k}": tuned["scores"][k] for k in ("f1@0.3", "parent_accuracy")}
        )
        model.save(out)
        print("micronuclei:", tuned["settings"], "training + validation:", tuned["scores"])


def choose_micronuclei(model, data: Path) -> dict:
    """The micronuclei's decoding and parent rule, chosen on the training and validation
    splits together (about 2,100 micronuclei; the validation split alone has about 200),
    from the maps and nuclei the model gives as users run it, one image at a time (all 33
    images' maps at once need about 20 GB)."""
    from cellseg_hcs.settings import FieldSettings
    from cellseg_hcs.training.micronuclei import MicronucleiFolders, MicronucleiTuner

    pipeline = model.pipeline(FieldSettings(probabilities=True))
    tuner = MicronucleiTuner(model)
    for split in ("training", "validation"):
        folders = MicronucleiFolders(
            data / "images",
            data / "nuclei_labels",
            data / "micronuclei_labels",
            data / "micronuclei_parent",
            pattern=f"{split}__*",
        )
        for index, truth in enumerate(folders):
            result = pipeline.run(truth.image)
            tuner.add(truth, result.maps, result.labels)
            print(f"micronuclei choice: {split} {index + 1}/{len(folders)}", flush=True)
    return tuner.choose()


if __name__ == "__main__":
    raise SystemExit(main())
