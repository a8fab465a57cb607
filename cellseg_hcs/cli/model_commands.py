"""Commands about models on image files: segment, train, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import SettingError
from .options import (
    FIELD_OPTIONS,
    cells_options,
    field_settings,
    progress_option,
    setting_option,
    settings_options,
    verbose_option,
)


@click.command(short_help="Label nuclei in image files: one label image per file.")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the label images (<stem>_labels.tif).",
)
@settings_options(*FIELD_OPTIONS)
@setting_option(
    "probabilities", help="Also write the foreground probability map (<stem>_probabilities.tif)."
)
@cells_options
@progress_option
@verbose_option
def segment(images: tuple[Path, ...], out: Path, progress: bool, **arguments) -> None:
    """Label objects in IMAGES (TIFF, PNG, or anything bioio reads) with a model.

    Writes OUT/<stem>_labels.tif for each input: uint16 (uint32 beyond 65535 objects),
    0 = background. A model with micronuclei also writes <stem>_micronuclei_labels.tif and
    <stem>_micronuclei_parents.tif (each micronucleus' pixels hold its parent nucleus'
    number in <stem>_labels.tif; 0: none). Works offline with the built-in model. An image
    that cannot be read is listed and skipped; the exit status is then 1 (2 when nothing
    could be done).

    \b
    Example:
      cellseg-hcs segment plate1/*.tif --out labels/ --channel 0
    """
    from ..errors import SomeInputsFailed
    from ..segment import segment_files

    settings = field_settings(arguments)
    try:
        results = segment_files(
            list(images), out, model=settings.model, settings=settings, progress=progress
        )
    except SomeInputsFailed as exc:
        for _, reason in exc.failures[:10]:
            click.echo(f"failed: {reason}", err=True)
        if len(exc.failures) > 10:
            click.echo(f"... and {len(exc.failures) - 10} more", err=True)
        raise
    totals: dict[str, int] = {}
    for result in results:
        for name, count in result.counts.items():
            totals[name] = totals.get(name, 0) + count
    counted = ", ".join(f"{count} {name}" for name, count in totals.items())
    click.echo(f"{len(results)} image(s), {counted or '0 objects'} -> {out}")
    resampled = [r for r in results if r.scale != 1.0 and r.diameter is not None]
    if resampled:
        sizes = ", ".join(
            f"{r.image.name} ({r.diameter:.0f} px, at {r.scale:.2f}x)" for r in resampled[:5]
        )
        more = f" and {len(resampled) - 5} more" if len(resampled) > 5 else ""
        click.echo(
            f"{len(resampled)} image(s) had objects far from the model's size and were "
            f"segmented resampled: {sizes}{more}."
        )
    for result in results:
        for note in result.notes:
            click.echo(f"note: {result.image.name}: {note}.")


@click.command(short_help="Train a model from image and mask folders (or a Cellpose folder).")
@click.option(
    "--images", required=True, type=click.Path(path_type=Path), help="Folder of training images."
)
@click.option(
    "--masks",
    type=click.Path(path_type=Path),
    help="Folder of masks with the same names (instance labels or binary masks). Without "
    "it, --images is a Cellpose folder: NAME_img.png (cell stain green, nuclei red) beside "
    "NAME_masks.png; the model then reads (cell stain, nuclei).",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Model file to write (.safetensors).",
)
@click.option("--val-images", type=click.Path(path_type=Path), help="Validation images.")
@click.option(
    "--val-masks",
    type=click.Path(path_type=Path),
    help="Validation masks (without them, --val-images is a Cellpose folder).",
)
@click.option(
    "--val-coco",
    type=click.Path(path_type=Path),
    default=None,
    help="Validation annotations in a COCO file of the images in --val-images (instead of "
    "--val-masks); with its categories, the model's per-class metrics are printed.",
)
@click.option("--pattern", default="*", show_default=True, help="Glob of training image names.")
@click.option("--epochs", default=50, show_default=True, help="Epochs (of --steps batches).")
@click.option("--steps", default=100, show_default=True, help="Batches per epoch.")
@click.option("--minutes", type=float, default=None, help="Stop after this much time.")
@click.option("--width", default=16, show_default=True, help="UNet base width.")
@click.option("--depth", default=5, show_default=True, help="UNet levels.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--learning-rate",
    default=2e-3,
    show_default=True,
    help="Peak learning rate (about half of it suits fine-tuning).",
)
@click.option(
    "--start-from",
    default=None,
    metavar="MODEL",
    help="Fine-tune this model (a name such as 'nuclei', or a file) on your images "
    "instead of starting afresh; its architecture is kept.",
)
@click.option(
    "--average",
    default=0.0,
    show_default=True,
    help="Keep an exponential moving average of the weights, moving this much "
    "less than all the way each step (0.999 smooths over ~1000 steps; 0: off).",
)
@click.option(
    "--target",
    type=click.Choice(["centre", "distance"]),
    default="centre",
    show_default=True,
    help="What the second output learns: 'centre' (one peak per object, keeps "
    "irregular nuclei whole) or 'distance' to the edge (the older models').",
)
@click.option(
    "--coco",
    type=click.Path(path_type=Path),
    default=None,
    help="Annotations in a COCO JSON file (LIVECell/EVICAN layout) of the images in "
    "--images, instead of --masks; two or more categories train a class head.",
)
@click.option(
    "--class-masks",
    multiple=True,
    metavar="CLASS=FOLDER",
    help="One mask folder per class, instead of --masks (repeat: --class-masks "
    "nucleus=nuclei/ --class-masks micronucleus=micronuclei/): trains a class head.",
)
@click.option(
    "--class-csv",
    type=click.Path(path_type=Path),
    default=None,
    help="With --masks: a CSV of each object's class (columns image, object, class: the "
    "image file's name without suffix, the object's id in its mask, its class name); "
    "trains a class head.",
)
@click.option(
    "--class-objects",
    multiple=True,
    metavar="CLASS=OBJECTS",
    help="Decode a class as an object set of its own (micronucleus=Micronuclei), with a "
    "parent among the model's objects; other classes stay the model's objects.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where to train: auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda "
    "or cuda:N.",
)
@click.option(
    "--loaders",
    default=0,
    type=click.IntRange(min=0),
    show_default=True,
    help="Processes that prepare the augmented batches (0: one thread; a GPU trains "
    "faster than one thread prepares, so give it several, such as 8).",
)
def train(
    images: Path,
    masks: Path | None,
    out: Path,
    val_images: Path | None,
    val_masks: Path | None,
    val_coco: Path | None,
    pattern: str,
    epochs: int,
    steps: int,
    minutes: float | None,
    width: int,
    depth: int,
    seed: int,
    learning_rate: float,
    start_from: str | None,
    average: float,
    target: str,
    coco: Path | None,
    class_masks: tuple[str, ...],
    class_csv: Path | None,
    class_objects: tuple[str, ...],
    device: str,
    loaders: int,
) -> None:
    """Train an instance segmentation model from image and mask folders.

    Images may have several channels (a cell model: cell stain, then nuclei). Without
    --masks, --images is one Cellpose folder (NAME_img.png with the cell stain in green and
    the nuclei in red, beside NAME_masks.png), read as (cell stain, nuclei).

    Keeps the epoch with the best validation AP when validation folders are given, and
    tunes the post-processing thresholds on them. With --start-from, fine-tunes an
    existing model (for example the shipped 'nuclei') on your own annotated images.
    """
    from ..training import data
    from ..training.train import train as run_training
    from ..training.train import training_device
    from ..training.tune import tune_postprocess

    training_device(device)  # a device that cannot train here is said before data is read
    if val_coco and (val_masks or not val_images):
        raise SettingError("--val-coco annotates --val-images; give it instead of --val-masks.")
    if masks and not val_coco and bool(val_images) != bool(val_masks):
        raise SettingError("give both --val-images and --val-masks, or neither.")
    if not masks and val_masks:
        raise SettingError(
            "--val-masks goes with --masks; without them both folders are Cellpose folders."
        )
    if sum(bool(x) for x in (masks, coco, class_masks)) > 1:
        raise SettingError("give one of --masks, --coco and --class-masks.")
    if class_csv and not masks:
        raise SettingError("--class-csv names the objects of --masks; give --masks too.")
    if coco:
        training = data.CocoDataset(coco, images)
    elif class_masks:
        training = data.ClassMaskFolders(
            images, _pairs(class_masks, "--class-masks"), pattern=pattern
        )
    else:
        training = data.training_folder(images, masks, pattern=pattern)
        if class_csv:
            training = data.ObjectClassCsv(training, class_csv)
    validation = None
    if val_coco:
        validation = data.CocoDataset(val_coco, val_images)
    elif val_images:
        validation = data.training_folder(val_images, val_masks)
    model = run_training(
        training,
        validation=validation,
        epochs=epochs,
        out=out,
        steps_per_epoch=steps,
        width=width,
        depth=depth,
        seed=seed,
        learning_rate=learning_rate,
        start_from=start_from,
        average=average,
        target=target,
        class_objects=_pairs(class_objects, "--class-objects"),
        time_limit=minutes * 60 if minutes else None,
        device=device,
        loaders=loaders,
        description={"images": str(images), "masks": str(masks or images)},
    )
    if validation is not None:
        best = tune_postprocess(model, validation)
        model.info.postprocess.update(best["settings"])
        model.save(out)
        scores = best["scores"]
        click.echo(f"validation F1 {scores['f1']:.3f}, AP {scores['ap']:.3f}")
        for name in model.info.classes:
            if f"{name}_f1" in scores:
                click.echo(
                    f"  class {name}: F1 {scores[f'{name}_f1']:.3f}, precision "
                    f"{scores[f'{name}_precision']:.3f}, recall {scores[f'{name}_recall']:.3f} "
                    f"({scores[f'{name}_n_true']:.0f} true objects)"
                )
        if "class_accuracy" in scores:
            click.echo(f"  right class of matched objects: {scores['class_accuracy']:.3f}")
    click.echo(f"model written to {out}")


@click.command(short_help="Score predicted labels against true ones (F1, AP, IoU...).")
@click.option(
    "--pred",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of predicted label images.",
)
@click.option(
    "--truth",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of true masks (paired by name; <stem>_labels.tif matches <stem>).",
)
@click.option(
    "--probabilities",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of foreground probability maps, for the pixel AuROC.",
)
@click.option(
    "--micronuclei-truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of true micronuclei labels: adds micronucleus detection (IoU 0.3 and 0.5), "
    "parent and per-nucleus count metrics (needs --parents; predictions "
    "<stem>_micronuclei_labels.tif and <stem>_micronuclei_parents.tif in --pred, as "
    "segment writes them).",
)
@click.option(
    "--parents",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of true parent maps: each micronucleus pixel holds its parent nucleus' id.",
)
@click.option(
    "--json",
    "json_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the metrics to this JSON file.",
)
def evaluate(
    pred: Path,
    truth: Path,
    probabilities: Path | None,
    micronuclei_truth: Path | None,
    parents: Path | None,
    json_file: Path | None,
) -> None:
    """Score predicted labels against true labels: pixel and instance metrics (and
    micronuclei with their parents, when their truth is given)."""
    from ..training.evaluate import evaluate_folders, evaluate_micronuclei_folders

    if (micronuclei_truth is None) != (parents is None):
        raise SettingError("--micronuclei-truth and --parents go together; give both.")
    scores = evaluate_folders(pred, truth, probabilities)
    if micronuclei_truth is not None:
        scores.update(evaluate_micronuclei_folders(pred, micronuclei_truth, truth, parents))
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        click.echo(f"{key:<{width}}  {value:.4f}")
    if json_file:
        json_file.write_text(json.dumps(scores, indent=2))


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``("a=b", ...)`` as a dict, or one sentence naming the option that is malformed."""
    pairs = {}
    for value in values:
        key, sign, rest = value.partition("=")
        if not sign or not key or not rest:
            raise SettingError(f"{option} takes NAME=VALUE, not {value!r}.")
        if key in pairs:
            raise SettingError(f"{option} names {key!r} twice; give each name once.")
        pairs[key] = rest
    return pairs
