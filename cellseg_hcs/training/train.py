"""Training: patches with augmentation, BCE + Dice + distance loss, Adam, best-on-validation.

Examples
--------
>>> import cellseg_hcs as cs
>>> data = cs.data.ImageMaskFolder("images/", "masks/")  # doctest: +SKIP
>>> model = cs.train(data, epochs=50)  # doctest: +SKIP
>>> model.save("my_nuclei.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..field.normalize import percentile_normalize
from ..field.scale import median_diameter
from ..model.architectures import build_network
from ..model.model import Model, ModelInfo
from .augment import (
    AugmentSettings,
    choose_scale,
    flip_rotate,
    paste_objects,
    random_patch,
    vary_intensity,
)
from .data.base import Sample
from .evaluate import evaluate_model
from .targets import NO_CLASS, TARGETS, instance_targets

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """How to train. ``steps_per_epoch`` batches make an epoch; validation runs after each.

    ``average``: when above 0, the weights validated, kept and returned are an exponential
    moving average of the trained ones, each step moving ``1 - average`` of the way to them
    (0.999 averages over roughly the last thousand steps); 0 keeps the trained weights.

    ``target``: what the second output learns (see :mod:`cellseg_hcs.training.targets`):
    ``"centre"``
    (one peak per object, the default) or ``"distance"`` (distance to the edge, as models
    before version 0.2 did; it splits irregular objects into their lobes).

    ``keep``: which weights are returned: ``"best"``, the epoch with the best validation AP
    (then F1), or ``"last"``, the final ones (validation, if given, is still scored and
    recorded each epoch). Without validation the last epoch is kept either way.

    ``classes``: the class names a class head learns (the samples' ``classes``; empty: the
    names found in the training samples, or no class head when they have none).
    ``class_objects`` routes classes to object sets of their own (see
    :class:`~cellseg_hcs.model.model.ModelInfo`). The class loss is a cross-entropy over
    the objects' pixels, each pixel weighted by its class's pixel frequency in the training
    set to the power ``-class_balance`` (0: unweighted; 1: every class weighs the same; the
    default 0.5 lifts micronuclei, 5% of the foreground, about 4x against nuclei), times
    ``class_weight``. With ``foreground_by_class``, the foreground and second-map terms weigh
    each object pixel by its class's weight too (background pixels weigh 1), so that a rare
    class's pixels count in the maps as much as in the class loss.

    ``device``: where the network trains: ``"auto"`` (a CUDA GPU when PyTorch sees one, else
    the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; validation then runs there too (on a
    GPU with the torch backend, in its default fp16), and the training record keeps the
    device used. ``loaders``: processes that draw the augmented batches (0: one
    thread beside the training, as on a CPU; a GPU outpaces one, so give it several),
    each from its own random stream (seed + its number).
    """

    epochs: int = 50
    steps_per_epoch: int = 100
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    distance_weight: float = 2.0
    width: int = 16
    depth: int = 4
    norm: str = "batch"
    stem: int = 1
    seed: int = 0
    threads: int | None = None
    time_limit: float | None = None
    average: float = 0.0
    target: str = "centre"
    keep: str = "best"
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    classes: tuple[str, ...] = ()
    class_objects: dict[str, str] = field(default_factory=dict)
    class_weight: float = 1.0
    class_balance: float = 0.5
    foreground_by_class: bool = False
    device: str = "auto"
    loaders: int = 0


class PatchSampler:
    """Draws augmented training batches (inputs, targets) from a dataset, repeatably."""

    def __init__(
        self,
        dataset: Sequence[Sample],
        augment: AugmentSettings,
        seed: int,
        target: str = "centre",
        classes: Sequence[str] = (),
    ) -> None:
        if len(dataset) == 0:
            raise InputError("the training dataset is empty.")
        if target not in TARGETS:
            raise InputError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}.")
        self.augment = augment
        self.target = target
        self.rng = np.random.default_rng(seed)
        self.classes = tuple(classes)
        self.images, self.labels, self.diameters, self.object_classes = [], [], [], []
        for sample in dataset:
            planes = _channels_first(np.asarray(sample.image), sample.labels.shape)
            self.images.append(np.stack([percentile_normalize(p) for p in planes]))
            self.labels.append(np.asarray(sample.labels).astype(np.int32))
            self.diameters.append(_nucleus_diameter(sample, self.classes))
            if self.classes:
                index = {name: i for i, name in enumerate(self.classes)}
                self.object_classes.append(
                    {int(k): index.get(v, NO_CLASS) for k, v in (sample.classes or {}).items()}
                )

    def class_frequencies(self) -> np.ndarray:
        """Each class's share of the training set's labelled object pixels."""
        counts = np.zeros(len(self.classes))
        for labels, classes in zip(self.labels, self.object_classes):
            areas = np.bincount(labels.ravel())
            for number, index in classes.items():
                if index != NO_CLASS and number < areas.size:
                    counts[index] += areas[number]
        return counts / max(counts.sum(), 1)

    @property
    def in_channels(self) -> int:
        return self.images[0].shape[0]

    def patch(self) -> tuple[np.ndarray, np.ndarray]:
        rng, settings = self.rng, self.augment
        index = int(rng.integers(len(self.images)))
        scale = choose_scale(self.diameters[index], settings, rng)
        image, labels = random_patch(self.images[index], self.labels[index], scale, settings, rng)
        classes = dict(self.object_classes[index]) if self.classes else None
        if rng.random() < settings.density_probability:
            other = int(rng.integers(len(self.images)))
            source = random_patch(self.images[other], self.labels[other], scale, settings, rng)
            source_classes = self.object_classes[other] if self.classes else None
            count = int(rng.integers(*settings.density_objects))
            # no draw when touching is off, so default runs keep their random stream
            touching = (
                settings.touching_probability > 0 and rng.random() < settings.touching_probability
            )
            image, labels = paste_objects(
                image,
                labels,
                *source,
                count,
                rng,
                touching=touching,
                gain=settings.pasted_gain,
                classes=classes,
                source_classes=source_classes,
            )
        image, labels = flip_rotate(image, labels, rng)
        image = vary_intensity(image, settings, rng)
        return image, instance_targets(labels, self.target, _class_lookup(classes))

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        patches = [self.patch() for _ in range(size)]
        x = torch.from_numpy(np.stack([p[0] for p in patches]))
        y = torch.from_numpy(np.stack([p[1] for p in patches]))
        return x, y


def _class_lookup(classes: dict[int, int] | None) -> np.ndarray | None:
    """Object id -> class index as an array (NO_CLASS where an id has none)."""
    if classes is None:
        return None
    lookup = np.full(max(classes, default=0) + 1, NO_CLASS, np.int64)
    for number, index in classes.items():
        lookup[number] = index
    return lookup


def _nucleus_diameter(sample: Sample, classes: Sequence[str]) -> float:
    """The median diameter of the sample's objects of its first class (all without classes):
    the scale augmentation rescales by the main objects, not by tiny micronuclei."""
    labels = np.asarray(sample.labels)
    if classes and sample.classes:
        main = [k for k, v in sample.classes.items() if v == classes[0]]
        labels = np.where(np.isin(labels, main), labels, 0)
    return median_diameter(labels)


def _channels_first(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """CYX planes from a YX, CYX or YXC (RGB) training image whose YX is ``shape``."""
    if image.ndim == 2:
        return image[None]
    if image.shape[:2] == tuple(shape) and image.shape[-1] != shape[-1]:
        return np.moveaxis(image, -1, 0)
    return image


def training_device(name: str) -> torch.device:
    """The device of a ``device`` setting (see :class:`TrainSettings`), or one sentence
    saying why it cannot be used here."""
    from ..settings import parse_device

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = parse_device(name) or "cpu"
    if chosen.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU here.")
        index = int(chosen.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r} asked for, but PyTorch sees {torch.cuda.device_count()} "
                "CUDA GPU(s) here."
            )
    return torch.device(chosen)


def make_current(device: torch.device) -> None:
    """A numbered GPU (``cuda:1``) becomes the current one, so that what runs on the current
    GPU (the loaders' pinning thread) runs there; ``cuda`` is the current one already."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


class _Batches(torch.utils.data.IterableDataset):
    """Endless batches of a sampler, for loader processes: worker k draws from its own
    random stream (the sampler's seed + k + 1)."""

    def __init__(self, sampler: PatchSampler, batch_size: int, seed: int) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        sampler = copy.copy(self.sampler)
        sampler.rng = np.random.default_rng(self.seed + 1 + (worker.id if worker else 0))
        while True:
            yield sampler.batch(self.batch_size)


def _loader(sampler: PatchSampler, settings: TrainSettings, pin: bool):
    """Batches from ``settings.loaders`` processes (a torch DataLoader)."""
    return iter(
        torch.utils.data.DataLoader(
            _Batches(sampler, settings.batch_size, settings.seed),
            batch_size=None,
            num_workers=settings.loaders,
            pin_memory=pin,
        )
    )


def _prefetch(sampler: PatchSampler, batch_size: int, stop: threading.Event) -> queue.Queue:
    batches: queue.Queue = queue.Queue(maxsize=3)

    def fill() -> None:
        while not stop.is_set():
            item = sampler.batch(batch_size)
            while not stop.is_set():
                try:
                    batches.put(item, timeout=0.5)
                    break
                except queue.Full:
                    continue

    threading.Thread(target=fill, daemon=True).start()
    return batches


def instance_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    distance_weight: float = 2.0,
    class_weights: torch.Tensor | None = None,
    class_weight: float = 1.0,
    foreground_by_class: bool = False,
) -> torch.Tensor:
    """BCE + soft Dice on the foreground, plus BCE of the second map (centre or distance).

    With class targets (a third target plane of class indices, see
    :func:`~cellseg_hcs.training.targets.class_index`), plus ``class_weight`` times the
    cross-entropy of the class channels (the network's last ones, whose ``logsigmoid`` is
    ``log_softmax``: see :func:`~cellseg_hcs.model.unet.class_logits`) over the object
    pixels, a pixel of class ``k`` weighted ``class_weights[k]`` (weighted mean). With
    ``foreground_by_class`` the two BCE terms weigh a pixel of class ``k`` by
    ``class_weights[k]`` as well, and every other pixel by 1 (mean over all pixels).
    """
    if targets.shape[1] < 3:
        return _instance_terms(logits, targets, distance_weight)
    index = targets[:, 2].long()
    labelled = index != NO_CLASS
    pixel_weights = None
    if foreground_by_class and class_weights is not None:
        pixel_weights = torch.where(
            labelled, class_weights.to(logits.dtype)[index.clamp(min=0)], 1.0
        )
    base = _instance_terms(logits, targets, distance_weight, pixel_weights)
    if not labelled.any():
        return base + 0.0 * logits[:, 2:].sum()
    log_probabilities = F.logsigmoid(logits[:, 2:])
    picked = torch.gather(log_probabilities, 1, index.clamp(min=0)[:, None])[:, 0]
    weights = (
        class_weights.to(logits.dtype)[index.clamp(min=0)]
        if class_weights is not None
        else torch.ones_like(picked)
    )
    weights = weights * labelled
    return base - class_weight * (weights * picked).sum() / weights.sum()


def _instance_terms(
    logits: torch.Tensor,
    targets: torch.Tensor,
    distance_weight: float,
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    foreground, distance = targets[:, 0], targets[:, 1]
    fg_logits = logits[:, 0]
    bce = F.binary_cross_entropy_with_logits(fg_logits, foreground, weight=pixel_weights)
    prob = torch.sigmoid(fg_logits)
    dims = (1, 2)
    dice = 1 - (2 * (prob * foreground).sum(dims) + 1) / (prob.sum(dims) + foreground.sum(dims) + 1)
    distance_term = F.binary_cross_entropy_with_logits(logits[:, 1], distance, weight=pixel_weights)
    return bce + dice.mean() + distance_weight * distance_term


def train(
    dataset: Sequence[Sample],
    *,
    validation: Sequence[Sample] | None = None,
    epochs: int = 50,
    out: str | Path | None = None,
    progress: bool = True,
    settings: TrainSettings | None = None,
    description: dict[str, Any] | None = None,
    start_from: Model | str | Path | None = None,
    **overrides: Any,
) -> Model:
    """Train an instance segmentation model and return the best one seen.

    Parameters
    ----------
    dataset:
        Training samples (any dataset in :mod:`cellseg_hcs.training.data`).
    validation:
        Samples scored after every epoch (instance AP over IoU 0.5-0.95, then F1); the
        best epoch is kept. Without it, the last epoch is kept.
    epochs:
        Number of epochs (``settings.steps_per_epoch`` batches each).
    out:
        Where to save the best model as it improves (a ``.safetensors`` file).
    settings, overrides:
        A :class:`TrainSettings`, and/or any of its fields as keywords.
    description:
        Free-form facts stored in the model's training record (data, command).
    start_from:
        A model (or its name or file) to fine-tune: training starts from its weights and keeps
        its architecture; ``width``, ``depth``, ``norm`` and ``stem`` settings are ignored.
    """
    settings = copy.deepcopy(settings) if settings else TrainSettings()
    settings.epochs = epochs
    for key, value in overrides.items():
        if not hasattr(settings, key):
            raise TypeError(f"train() got an unknown setting {key!r}")
        setattr(settings, key, value)
    torch.manual_seed(settings.seed)
    device = training_device(settings.device)
    settings.device = str(device)  # the training record says where it ran
    if settings.loaders < 0:
        raise InputError(f"loaders must be 0 or more, not {settings.loaders}.")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if not settings.classes:
        settings.classes = _dataset_classes(dataset)
    settings.classes = tuple(settings.classes)
    if len(settings.classes) == 1:
        raise InputError(
            f"the training objects have one class ({settings.classes[0]}); a class head needs "
            "two or more."
        )
    unknown = sorted(set(settings.class_objects) - set(settings.classes))
    if unknown:
        raise InputError(
            f"class_objects names {', '.join(unknown)}, which the training data has not "
            f"(its classes: {', '.join(settings.classes) or 'none'})."
        )
    sampler = PatchSampler(
        dataset, settings.augment, settings.seed, settings.target, settings.classes
    )
    class_weights = None
    if settings.classes:
        frequencies = sampler.class_frequencies()
        powered = np.where(frequencies > 0, np.maximum(frequencies, 1e-6), 1.0)
        class_weights = torch.tensor(
            powered**-settings.class_balance, dtype=torch.float32, device=device
        )
        log.info("class pixel shares %s, weights %s", frequencies, class_weights.tolist())
    if start_from is not None:
        network, info = _starting_point(start_from, sampler.in_channels, settings)
    else:
        network_options = {
            "in_channels": sampler.in_channels,
            "out_channels": 2 + len(settings.classes),
            "depth": settings.depth,
            "width": settings.width,
            "norm": settings.norm,
            "stem": settings.stem,
        }
        if settings.classes:
            network_options["classes"] = len(settings.classes)
        network = build_network("unet", **network_options)
        info = ModelInfo(architecture="unet", network=network_options)
    info.outputs = ("foreground", settings.target, *(f"class:{c}" for c in settings.classes))
    info.classes = settings.classes
    info.class_objects = dict(settings.class_objects)
    started_from = info.training
    info.training = {
        "settings": _plain(asdict(settings)),
        "train_images": len(dataset),
        "validation_images": len(validation or []),
        **(description or {}),
    }
    if start_from is not None:
        info.training["started_from"] = started_from
    model = Model(network, info)
    if not 0 <= settings.average < 1:
        raise InputError(f"average must be in [0, 1), not {settings.average}.")
    if settings.keep not in ("best", "last"):
        raise InputError(f"keep must be 'best' or 'last', not {settings.keep!r}.")
    network.to(device)
    averaged = copy.deepcopy(network).eval().requires_grad_(False) if settings.average else None
    scored = Model(averaged, info) if averaged is not None else model
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    total_steps = settings.epochs * settings.steps_per_epoch
    network = network.to(memory_format=torch.channels_last)  # ~1.6x faster convs on CPU
    # Validation runs where the training does (on a GPU with the torch backend, under its
    # default precision: no engine built per epoch).
    validate_on = (
        {"device": "cpu"} if device.type == "cpu" else {"backend": "torch", "device": str(device)}
    )
    make_current(device)

    stop = threading.Event()
    loader = batches = None
    best_key, best_state, history = None, None, []
    started = time.monotonic()
    step = 0
    bar = _progress(total_steps, progress)
    try:
        if settings.loaders:
            loader = _loader(sampler, settings, device.type == "cuda")
        else:
            batches = _prefetch(sampler, settings.batch_size, stop)
        for epoch in range(1, settings.epochs + 1):
            network.train()
            losses = []
            stepping = time.monotonic()
            for _ in range(settings.steps_per_epoch):
                done = _fraction_done(step, total_steps, started, settings.time_limit)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(done, settings.learning_rate)
                x, y = next(loader) if loader is not None else batches.get()
                x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                y = y.to(device, non_blocking=True)
                loss = instance_loss(
                    network(x),
                    y,
                    settings.distance_weight,
                    class_weights,
                    settings.class_weight,
                    settings.foreground_by_class,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if averaged is not None:
                    update_average(averaged, network, settings.average)
                step += 1
                losses.append(loss.item())
                bar.update(1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            network.eval()
            record = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "seconds": round(time.monotonic() - started, 1),
                "step_seconds": round(time.monotonic() - stepping, 3),
            }
            if validation:
                scored.forget_runtimes()
                scores = evaluate_model(scored, validation, predict_options=validate_on)
                record.update({"val_f1": scores["f1"], "val_ap": scores["ap"]})
                key = (round(scores["ap"], 4), scores["f1"])
            if not validation or settings.keep == "last":
                key = (epoch,)
            history.append(record)
            bar.set_postfix(
                loss=f"{record['loss']:.3f}",
                val_f1=f"{record.get('val_f1', 0):.3f}",
                val_ap=f"{record.get('val_ap', 0):.3f}",
            )
            log.info("epoch %s", record)
            if best_key is None or key > best_key:
                best_key = key
                best_state = copy.deepcopy(scored.network.state_dict())
                info.training["best_epoch"] = epoch
                info.metrics = {k: v for k, v in record.items() if k.startswith("val_")}
                if out is not None:
                    info.training["history"] = history
                    scored.save(out)
            if _fraction_done(step, total_steps, started, settings.time_limit) >= 1:
                log.info("training budget spent after epoch %d", epoch)
                break
    finally:
        stop.set()
        loader = None  # its processes end with it
        bar.close()
    if best_state is not None:  # None only when no epoch ran: the starting weights are kept
        network.load_state_dict(best_state)
    network.to("cpu")  # a model leaves training as it came: its network on the CPU
    info.training["history"] = history
    info.training["seconds"] = round(time.monotonic() - started, 1)
    info.training["steps"] = step
    model.forget_runtimes()
    if out is not None:
        model.save(out)
    return model


def update_average(averaged: torch.nn.Module, network: torch.nn.Module, decay: float) -> None:
    """Move ``averaged``'s weights and float buffers ``1 - decay`` of the way to ``network``'s.

    Integer buffers (batch-norm step counts) are copied.
    """
    with torch.no_grad():
        for mine, theirs in zip(averaged.state_dict().values(), network.state_dict().values()):
            if mine.is_floating_point():
                mine.lerp_(theirs, 1 - decay)
            else:
                mine.copy_(theirs)


def _starting_point(
    start_from: Model | str | Path, in_channels: int, settings: TrainSettings
) -> tuple[torch.nn.Module, ModelInfo]:
    """A copy of a trained model's network to fine-tune, and its information.

    The copy keeps the model's normalization, post-processing and working diameter; its
    training record is replaced by where it started from.
    """
    from ..model.model import load_model

    base = start_from if isinstance(start_from, Model) else load_model(start_from)
    options = dict(base.info.network)
    if base.info.architecture != "unet" or options.get("out_channels") != 2 + len(
        base.info.classes
    ):
        raise InputError("start_from must be an instance model made by cellseg-hcs train.")
    if base.info.classes and tuple(base.info.classes) != tuple(settings.classes):
        raise InputError(
            f"start_from has the classes {', '.join(base.info.classes)}; the training data "
            f"has {', '.join(settings.classes) or 'none'}."
        )
    if options.get("in_channels") != in_channels:
        raise InputError(
            f"start_from takes {options.get('in_channels')} channel(s) but the "
            f"training images have {in_channels}."
        )
    for key in ("width", "depth", "norm", "stem"):
        if key in options:
            setattr(settings, key, options[key])
    info = copy.deepcopy(base.info)
    info.training = {
        "hash": base.hash,
        "source": str(base.source),
        "seconds": base.info.training.get("seconds"),
        "steps": base.info.training.get("steps"),
    }
    info.metrics = {}
    info.package_version = ModelInfo().package_version
    network = copy.deepcopy(base.network).float().train()
    if settings.classes and not base.info.classes:
        network = _with_class_head(network, len(settings.classes))
        options.update(out_channels=2 + len(settings.classes), classes=len(settings.classes))
        info.network = options
    return network, info


def _with_class_head(network: torch.nn.Module, count: int) -> torch.nn.Module:
    """The network with ``count`` class channels added to its head, initialised to zero (all
    classes equally likely) so that its foreground and centre outputs are unchanged."""
    old = network.head
    head = torch.nn.Conv2d(old.in_channels, old.out_channels + count, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[: old.out_channels] = old.weight
        head.bias[: old.out_channels] = old.bias
    network.head = head
    network.classes = count
    return network


def _dataset_classes(dataset: Sequence[Sample]) -> tuple[str, ...]:
    """The class names of a dataset's objects: in the order the dataset declares them
    (``class_names``: a COCO file's category ids, the order of the class mask folders),
    else in order of first appearance."""
    declared = getattr(dataset, "class_names", None)
    if declared:
        return tuple(declared)
    names: dict[str, None] = {}
    for sample in dataset:
        for name in (sample.classes or {}).values():
            names.setdefault(name, None)
    return tuple(names)


def _fraction_done(step: int, total_steps: int, started: float, time_limit: float | None) -> float:
    """How far training is: by steps, or by time when a time limit is set (whichever is ahead)."""
    done = step / max(total_steps, 1)
    if time_limit:
        done = max(done, (time.monotonic() - started) / time_limit)
    return min(done, 1.0)


def learning_rate_at(done: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up to ``peak`` over the first 3%, then cosine decay to 1% of it."""
    if done < warmup:
        return peak * (0.1 + 0.9 * done / warmup)
    cosine = 0.5 * (1 + np.cos(np.pi * (done - warmup) / (1 - warmup)))
    return peak * (0.01 + 0.99 * cosine)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="training", unit="step", disable=not enabled)
