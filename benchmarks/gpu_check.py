"""Device check: every GPU path of cellseg-hcs, run once, timed, in one command.

    python benchmarks/gpu_check.py --out DIR            # < 8 min on one NVIDIA GPU
    python benchmarks/gpu_check.py --out DIR --quick    # tiny sizes (the test suite's run)

On a machine with an NVIDIA GPU and PyTorch with CUDA (TensorRT and onnxruntime-gpu are
used when installed, and reported absent otherwise), in this order:

1. **smoke**: every backend on every kind of device it has here predicts a real mnfinder
   image; the maps must be finite probabilities close to torch's fp32 maps on the CPU.
2. **network**: megapixels per second of each backend and precision on full batches of
   full tiles (host copies included, tiling excluded), after warm-up batches.
3. **agreement**: fp16 / bf16 (and the GPU's fp32, TF32 where torch allows it) against
   torch fp32 on the CPU, on the mnfinder test images and a 2160 x 2160 field: largest and
   mean absolute difference of the maps; F1 (IoU 0.5) of the objects against the fp32
   objects, and against the images' true nuclei.
4. **stages**: read, normalize, predict, post-process, measure (default features) of
   2160 x 2160 fields tiled from the mnfinder test images, through the public recipe
   (``cs.load_model("nuclei").pipeline(FieldSettings(...))``: prepare, predict, objects,
   measure), one field after another in this process, after a warm-up field.
5. **plate**: a short plate run (OME-Zarr, default features) on the local cluster in the
   layout this machine gets (:mod:`cellseg_hcs.plate.layout`: on a GPU, one predictor
   process per GPU beside CPU workers that post-process and measure).
6. **training**: the default model's recipe (UNet, the shipped model's architecture)
   trained for a few hundred steps on the GPU from the mnfinder images with their nuclei
   and micronuclei (a class head), batches from loader processes, validated on the GPU
   each epoch: steps and patches per second (the steps' own time, not validation's); the
   loss must fall and the model must come back on the CPU. It tells how many
   minutes a real training run (``examples/train_default_model.py --device cuda
   --loaders 8``) needs there.

Without a GPU it runs the same sections on the CPU (smaller, to stay within a few minutes
on a small machine) and says so in one line. It writes ``DIR/gpu_check.json`` (every number,
the machine, the command) and ``DIR/gpu_check.md`` (the tables), and exits 1 when a check
failed. Sections that would run past the time budget are recorded as skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MNFINDER = REPO / "tests" / "data" / "mnfinder"
NO_GPU = "no CUDA GPU here: ran the CPU parts only (the GPU sections need an NVIDIA GPU)."
# A map within this of torch's fp32 maps is a working backend (fp16 differs by ~1e-3).
SMOKE_TOLERANCE = 0.05
# Agreement is a measurement; it fails only where a precision breaks the model (overflow,
# a wrong cast: F1 far below this), not for the odd object split differently at a border.
AGREEMENT_F1 = 0.9

sys.path.insert(0, str(HERE))


class Sizes(NamedTuple):
    """How much each section does: full on a GPU, smaller on a CPU, tiny with --quick."""

    tile: int
    """Tile side of the smoke, network and agreement sections."""
    batch: int
    network_batches: int
    agreement_images: int
    agreement_side: int | None
    """The agreement images cropped to this side (None: whole)."""
    agreement_field: bool
    """Also a 2160 x 2160 field in the agreement section."""
    field_tile: int | None
    """Tile side of the stage split and the plate run (None: the settings' default)."""
    stage_fields: int
    field_side: int
    plate_fields: int
    plate_side: int
    features: str
    budget_seconds: float
    train_steps: int
    """Training steps (two epochs of half of them)."""
    train_loaders: int
    train_patch: int


SIZES = {
    "gpu": Sizes(1024, 4, 20, 4, None, True, None, 8, 2160, 16, 2160, "default", 420, 400, 8, 256),
    # bf16 runs ~5x slower than fp32 on CPUs without bf16 instructions: small tiles.
    "cpu": Sizes(256, 2, 1, 2, None, False, None, 2, 2160, 2, 1080, "default", 200, 20, 0, 256),
    "quick": Sizes(128, 2, 1, 1, 256, False, 128, 1, 256, 2, 256, "minimal", 120, 4, 2, 64),
}


# ----------------------------------------------------------------------------- data


def mnfinder_images(count: int, side: int | None = None) -> list[tuple[str, np.ndarray, Any]]:
    """``(name, image, true nuclei labels)`` of the first ``count`` test images (cropped to
    ``side`` when given)."""
    import tifffile

    found = []
    for path in sorted((MNFINDER / "images").glob("*.tif"))[:count]:
        image = tifffile.imread(path)
        truth_path = MNFINDER / "nuclei_labels" / path.name
        truth = tifffile.imread(truth_path) if truth_path.is_file() else None
        if side:
            image = image[:side, :side]
            truth = truth[:side, :side] if truth is not None else None
        found.append((path.stem, image, truth))
    return found


def montage(count: int, side: int, folder: Path) -> list[Path]:
    """``count`` fields of ``side`` x ``side`` tiled from the mnfinder test images (tif)."""
    import speed

    images = sorted((MNFINDER / "images").glob("*.tif"))
    return speed.montage_fields(images, count, folder, side)


# ----------------------------------------------------------------------------- backends


def backend_kinds() -> tuple[list[str], dict[str, str]]:
    """``backend@device`` for every backend on each kind of device it has here, and the
    reason each absent backend gives."""
    import speed

    from cellseg_hcs.runtime import backend_report

    report = backend_report()
    absent = {name: a.reason for name, a in report.items() if not a.ok}
    return speed.timed_backends(report), absent


def precisions(kind: str) -> tuple[str | None, ...]:
    """The precisions each backend is checked in (None: the backend's only one)."""
    backend, _, device = kind.partition("@")
    if backend == "torch":
        return ("fp32", "bf16") if device == "cpu" else ("fp32", "fp16", "bf16")
    if backend == "tensorrt":
        return ("fp16",)  # one engine build; fp32 engines are built on request only
    return (None,)


def measured_kinds(kinds: list[str], gpu: bool) -> list[str]:
    """The kinds the network and agreement sections measure: on a GPU machine its GPU
    backends (the CPU's are smoke-tested; torch fp32 on the CPU is the reference), else all."""
    return [kind for kind in kinds if "@cuda" in kind] if gpu else kinds


def label(kind: str, precision: str | None) -> str:
    return f"{kind} {precision}" if precision else kind


def overlap(tile: int) -> int:
    return min(64, tile // 4)


def field_options(sizes: Sizes) -> dict[str, int]:
    """Tiling of the stage split and the plate run (the settings' defaults unless small)."""
    if sizes.field_tile is None:
        return {}
    return {"tile_size": sizes.field_tile, "overlap": overlap(sizes.field_tile)}


def runtime_for(model, kind: str, precision: str | None, sizes: Sizes):
    from cellseg_hcs.runtime import Runtime

    backend, _, device = kind.partition("@")
    options = {"precision": precision} if precision else {}
    return Runtime(
        model,
        backend,
        device,
        tile_size=sizes.tile,
        overlap=overlap(sizes.tile),
        batch_size=sizes.batch,
        **options,
    )


# ----------------------------------------------------------------------------- sections


def smoke(model, kinds: list[str], absent: dict[str, str], sizes: Sizes) -> list[dict]:
    """Each backend's default precision predicts one real image like torch fp32 on the CPU."""
    name, image, _ = mnfinder_images(1, sizes.agreement_side)[0]
    field = model.prepare(image, 0)
    reference = runtime_for(model, "torch@cpu", "fp32", sizes).predict(field)
    rows = []
    for kind in kinds:
        row: dict[str, Any] = {"backend": kind, "image": name}
        try:
            runtime = runtime_for(model, kind, None, sizes)
            maps = runtime.predict(field)
            difference = float(np.abs(maps - reference).max())
            row.update(runtime.describe(), backend=kind, max_abs_diff=difference)
            ok = (
                maps.shape == reference.shape
                and bool(np.isfinite(maps).all())
                and 0.0 <= float(maps.min()) <= float(maps.max()) <= 1.0
                and difference <= SMOKE_TOLERANCE
            )
            row["status"] = "passed" if ok else "failed"
            if not ok:
                row["detail"] = f"maps {maps.shape}, range {maps.min():.3g}-{maps.max():.3g}"
        except Exception as exc:  # noqa: BLE001 - recorded; the other backends go on
            row.update(status="failed", detail=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    rows += [{"backend": name, "status": "absent", "detail": why} for name, why in absent.items()]
    return rows


def device_only_seconds(backend, batch: np.ndarray, repeats: int) -> float | None:
    """Seconds for ``repeats`` batches already on the GPU (no host copies), for the torch
    CUDA and TensorRT backends; None for the others. Uses the backends' own stream, network
    and execution context (not run on a GPU yet: see benchmarks/README.md)."""
    transfers = getattr(backend, "transfers", None)
    if transfers is None:
        return None
    import torch

    if backend.name == "torch":
        with transfers.on_device(), torch.inference_mode():
            inputs = transfers.to_device(batch)
            with transfers.on_stream(), backend._autocast():
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                backend.network(inputs)
                transfers.stream.synchronize()
                started = time.perf_counter()
                for _ in range(repeats):
                    backend.network(inputs)
                transfers.stream.synchronize()
        return time.perf_counter() - started
    if backend.name == "tensorrt":
        context = backend.context
        with backend._lock, transfers.on_device():
            inputs = transfers.to_device(batch, backend.input_dtype)
            context.set_input_shape(backend.input_name, tuple(int(n) for n in inputs.shape))
            shape = tuple(int(n) for n in context.get_tensor_shape(backend.output_name))
            outputs = transfers.empty(shape, backend.output_dtype)
            context.set_tensor_address(backend.input_name, int(inputs.data_ptr()))
            context.set_tensor_address(backend.output_name, int(outputs.data_ptr()))
            context.execute_async_v3(transfers.handle)
            transfers.stream.synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                context.execute_async_v3(transfers.handle)
            transfers.stream.synchronize()
        return time.perf_counter() - started
    return None


def network_speed(model, kinds: list[str], sizes: Sizes) -> list[dict]:
    """Megapixels per second of each backend and precision on full batches of full tiles."""
    rng = np.random.default_rng(0)
    shape = (sizes.batch, model.info.in_channels, sizes.tile, sizes.tile)
    batch = rng.normal(0.2, 0.3, size=shape).astype(np.float32)
    rows = []
    for kind in kinds:
        for precision in precisions(kind):
            row: dict[str, Any] = {"backend": label(kind, precision), "tile": sizes.tile}
            try:
                backend = runtime_for(model, kind, precision, sizes).backend
                # Warm-up: lazy engine setup, cuDNN's tuning, the caching allocators (two
                # batches where the timed run is long enough to afford them).
                for _ in range(1 + (sizes.network_batches >= 10)):
                    backend.predict(batch)
                started = time.perf_counter()
                for _ in range(sizes.network_batches):
                    backend.predict(batch)
                seconds = time.perf_counter() - started
                megapixels = sizes.network_batches * sizes.batch * sizes.tile**2 / 1e6
                row.update(
                    status="passed",
                    batch=sizes.batch,
                    batches=sizes.network_batches,
                    seconds=seconds,
                    mp_per_s=megapixels / seconds,
                )
                try:  # the network alone, inputs already on the GPU: a measurement only
                    on_gpu = device_only_seconds(backend, batch, sizes.network_batches)
                    if on_gpu:
                        row["device_only_mp_per_s"] = megapixels / on_gpu
                except Exception as exc:  # noqa: BLE001 - recorded beside the passed row
                    row["device_only_detail"] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - recorded; the others go on
                row.update(status="failed", detail=f"{type(exc).__name__}: {exc}")
            rows.append(row)
    return rows


def agreement_scores(
    reference_maps: list[np.ndarray],
    maps: list[np.ndarray],
    reference_labels: list[np.ndarray],
    labels: list[np.ndarray],
    truths: list[np.ndarray | None] | None = None,
) -> dict[str, float]:
    """How far maps and objects are from the reference's: the largest and mean absolute
    difference of the maps, F1 (IoU 0.5) of the objects against the reference objects, and
    against the true objects where given.

    Examples
    --------
    >>> maps = [np.zeros((2, 4, 4), np.float32)]
    >>> labels = [np.pad(np.ones((2, 2), int), 1)]
    >>> agreement_scores(maps, maps, labels, labels)["f1_vs_reference"]
    1.0
    """
    from cellseg_hcs.training.metrics import InstanceScores, match_instances

    differences = [np.abs(a - b) for a, b in zip(reference_maps, maps)]
    scores = {
        "max_abs_diff": float(max(d.max() for d in differences)),
        "mean_abs_diff": float(np.mean([d.mean() for d in differences])),
        "objects": int(sum(int(x.max()) for x in labels)),
        "f1_vs_reference": InstanceScores(
            matches=[match_instances(a, b) for a, b in zip(reference_labels, labels)]
        ).matching_summary()["f1"],
    }
    pairs = [(t, x) for t, x in zip(truths or [], labels) if t is not None]
    if pairs:
        scores["f1_vs_truth"] = InstanceScores(
            matches=[match_instances(t, x) for t, x in pairs]
        ).matching_summary()["f1"]
    return scores


def agreement(model, kinds: list[str], sizes: Sizes, folder: Path) -> dict[str, Any]:
    """Each backend and precision against torch fp32 on the CPU: maps and objects."""
    from cellseg_hcs.field.pipeline import FieldChannels
    from cellseg_hcs.settings import FieldSettings

    images = mnfinder_images(sizes.agreement_images, sizes.agreement_side)
    data = [(name, image, truth) for name, image, truth in images]
    if sizes.agreement_field:
        import tifffile

        path = montage(1, sizes.field_side, folder)[0]
        data.append((path.stem, tifffile.imread(path), None))
    settings = FieldSettings(model="nuclei", diameter=None)

    def objects(kind: str, precision: str | None):
        pipeline = model.pipeline(settings, runtime=runtime_for(model, kind, precision, sizes))
        maps, labels = [], []
        for name, image, _ in data:
            prepared = pipeline.prepare(FieldChannels({"DNA": image}, name))
            maps.append(pipeline.predict(prepared, 1.0))
            labels.append(pipeline.objects(prepared, maps[-1], 1.0).labels)
        return maps, labels

    truths = [truth for _, _, truth in data]
    reference_maps, reference_labels = objects("torch@cpu", "fp32")
    rows: dict[str, Any] = {
        "reference": "torch@cpu fp32",
        "images": [name for name, _, _ in data],
        "torch@cpu fp32": agreement_scores(
            reference_maps, reference_maps, reference_labels, reference_labels, truths
        ),
    }
    for kind in kinds:
        for precision in precisions(kind):
            name = label(kind, precision)
            if name == "torch@cpu fp32":
                continue
            try:
                maps, labels = objects(kind, precision)
                scores = agreement_scores(reference_maps, maps, reference_labels, labels, truths)
                scores["status"] = (
                    "passed" if scores["f1_vs_reference"] >= AGREEMENT_F1 else "failed"
                )
            except Exception as exc:  # noqa: BLE001 - recorded; the others go on
                scores = {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}
            rows[name] = scores
    return rows


def stage_split(sizes: Sizes, folder: Path) -> dict[str, Any]:
    """Seconds of each stage of the public recipe over 2160 x 2160 fields, one at a time."""
    import cellseg_hcs as cs
    from cellseg_hcs.field.pipeline import FieldChannels
    from cellseg_hcs.io.images import read_image
    from cellseg_hcs.settings import FieldSettings

    paths = montage(sizes.stage_fields, sizes.field_side, folder)
    settings = FieldSettings(model="nuclei", diameter=None, **field_options(sizes))
    pipeline = cs.load_model("nuclei").pipeline(settings)
    stages = ("read", "normalize", "predict", "postprocess", "measure")
    seconds = dict.fromkeys(stages, 0.0)
    megapixels = 0.0
    objects = 0
    for index, path in enumerate([paths[0], *paths]):  # the first: a warm-up
        clock = [time.perf_counter()]
        image = read_image(path)
        clock.append(time.perf_counter())
        prepared = pipeline.prepare(FieldChannels.from_array(image, ["DNA"], str(path)))
        clock.append(time.perf_counter())
        maps = pipeline.predict(prepared, 1.0)
        clock.append(time.perf_counter())
        result = pipeline.objects(prepared, maps, 1.0)
        clock.append(time.perf_counter())
        pipeline.measure(prepared, result, sizes.features)
        clock.append(time.perf_counter())
        if index == 0:
            continue
        for stage, begin, end in zip(stages, clock, clock[1:]):
            seconds[stage] += end - begin
        megapixels += image.size / 1e6
        objects += result.count
    whole = sum(seconds.values())
    return {
        "status": "passed",
        "fields": len(paths),
        "side": sizes.field_side,
        "features": sizes.features,
        "backend": pipeline.runtime.describe(),
        "batches": pipeline.runtime.batches,
        "megapixels": megapixels,
        "objects": objects,
        "seconds": seconds,
        "mp_per_s": {stage: megapixels / max(s, 1e-9) for stage, s in seconds.items()}
        | {"whole": megapixels / max(whole, 1e-9)},
    }


def plate_run(sizes: Sizes, folder: Path, processes: bool) -> dict[str, Any]:
    """A short plate run on the local cluster laid out for this machine."""
    import tifffile
    from distributed import Client

    from cellseg_hcs.io.convert import write_plate
    from cellseg_hcs.plate.cluster import local_cluster
    from cellseg_hcs.plate.layout import machine_layout
    from cellseg_hcs.plate.run import run_plate

    paths = montage(sizes.plate_fields, sizes.plate_side, folder)
    wells = ("B02", "B03", "C02", "C03")
    fields = {
        (wells[index % len(wells)], index // len(wells)): (lambda p=path: tifffile.imread(p))
        for index, path in enumerate(paths)
    }
    plate = write_plate(folder / "plate.zarr", fields, channel_names=["DNA"])
    layout = machine_layout()
    started = time.perf_counter()
    with local_cluster(layout, processes=processes) as cluster, Client(cluster) as client:
        cluster_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = run_plate(
            plate,
            folder / "run",
            model="nuclei",
            features=sizes.features,
            scheduler=client,
            progress=False,
            diameter=None,
            **field_options(sizes),
        )
        seconds = time.perf_counter() - started
    images = result.images
    megapixels = float((images["Height"] * images["Width"]).sum()) / 1e6
    stage_columns = [c for c in images.columns if c.startswith("Seconds_")]
    return {
        "status": "passed" if result.failed == 0 and len(images) == len(paths) else "failed",
        "layout": layout.describe(),
        "worker_processes": processes,
        "fields": len(images),
        "side": sizes.plate_side,
        "features": sizes.features,
        "failed": result.failed,
        "objects": result.objects,
        "backends": sorted(set(images["backend"].astype(str))),
        "cluster_start_seconds": cluster_seconds,
        "seconds": seconds,
        "megapixels": megapixels,
        "mp_per_s": megapixels / max(seconds, 1e-9),
        "median_field_seconds": {c: float(images[c].median()) for c in stage_columns},
    }


# ----------------------------------------------------------------------------- machine


def training(sizes: Sizes, gpu: bool) -> dict[str, Any]:
    """Steps per second of the default model's recipe with a class head on this machine's
    fastest device; the loss must fall from the first epoch to the second."""
    from cellseg_hcs.training import data
    from cellseg_hcs.training.augment import AugmentSettings
    from cellseg_hcs.training.train import train

    classes = {
        "nucleus": MNFINDER / "nuclei_labels",
        "micronucleus": MNFINDER / "micronuclei_labels",
    }
    samples = list(data.ClassMaskFolders(MNFINDER / "images", classes))
    device = "cuda" if gpu else "cpu"
    half = max(sizes.train_steps // 2, 1)
    started = time.perf_counter()
    model = train(
        samples[1:],
        validation=samples[:1],
        epochs=2,
        steps_per_epoch=half,
        progress=False,
        device=device,
        loaders=sizes.train_loaders,
        width=16,
        depth=5,
        stem=2,
        batch_size=8,
        target="distance",
        class_objects={"micronucleus": "Micronuclei"},
        augment=AugmentSettings(patch_size=sizes.train_patch),
        keep="last",
    )
    seconds = time.perf_counter() - started
    history = model.info.training["history"]
    loss = [round(record["loss"], 4) for record in history]
    steps = model.info.training["steps"]
    train_seconds = sum(record["step_seconds"] for record in history)  # not validation
    # A few steps (--quick) only show that training runs; a real run's loss must fall.
    finite = bool(np.all(np.isfinite(loss)))
    passed = finite and (sizes.train_steps < 20 or (len(loss) == 2 and loss[1] < loss[0]))
    on_cpu = {p.device.type for p in model.network.parameters()} == {"cpu"}
    return {
        "status": "passed" if passed and on_cpu else "failed",
        "detail": "" if passed and on_cpu else f"loss by epoch {loss}, model on the CPU: {on_cpu}",
        "device": device,
        "loaders": sizes.train_loaders,
        "steps": steps,
        "batch": 8,
        "patch": sizes.train_patch,
        "loss": loss,
        "seconds": seconds,
        "step_seconds": train_seconds,
        "steps_per_s": steps / max(train_seconds, 1e-9),
        "validation_f1": history[-1].get("val_f1"),
    }


def machine() -> dict[str, Any]:
    import speed
    import torch

    from cellseg_hcs.plate.layout import memory_gb

    info = {**speed.machine(), "memory_gb": memory_gb(), "torch": torch.__version__}
    info["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        info["gpus"] = [
            {
                "name": torch.cuda.get_device_name(index),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(index))),
                "memory_gb": torch.cuda.get_device_properties(index).total_memory / 1e9,
            }
            for index in range(torch.cuda.device_count())
        ]
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32_convolutions"] = bool(torch.backends.cudnn.allow_tf32)
    from cellseg_hcs.runtime import backend_report

    info["backends"] = {name: asdict(a) for name, a in backend_report().items()}
    return info


def has_gpu() -> bool:
    from cellseg_hcs.runtime.base import no_cuda_gpu_here

    if no_cuda_gpu_here():
        return False
    import torch

    return torch.cuda.is_available()


# ----------------------------------------------------------------------------- report


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Device check ({results['date']})", ""]
    info = results["machine"]
    gpus = ", ".join(g["name"] for g in info.get("gpus", [])) or "none"
    lines += [
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {gpus}; torch {info['torch']} "
        f"(CUDA {info['torch_cuda']}). Command: `{results['command']}`; "
        f"{results['seconds']:.0f} s in all.",
        "",
    ]
    if not results["gpu"]:
        lines += [NO_GPU, ""]
    sections = results["sections"]
    if "smoke" in sections:
        lines += ["## Backends", "", "| backend | status | device | precision | max abs diff |"]
        lines += ["|---|---|---|---|---|"]
        for row in sections["smoke"]:
            diff = f"{row['max_abs_diff']:.2e}" if "max_abs_diff" in row else ""
            detail = row.get("detail", "")
            lines.append(
                f"| {row['backend']} | {row['status']}{': ' + detail if detail else ''} | "
                f"{row.get('device', '')} | {row.get('precision', '')} | {diff} |"
            )
        lines.append("")
    if "network" in sections:
        lines += ["## Network", "", "| backend, precision | tile x batch | MP/s |", "|---|---|---|"]
        for row in sections["network"]:
            speed = f"{row['mp_per_s']:.2f}" if "mp_per_s" in row else row.get("detail", "")
            lines.append(f"| {row['backend']} | {row['tile']} x {row.get('batch', '')} | {speed} |")
        lines.append("")
    if "agreement" in sections:
        rows = sections["agreement"]
        lines += [
            f"## Agreement with {rows['reference']} ({len(rows['images'])} images)",
            "",
            "| backend, precision | max abs diff | mean abs diff | F1 vs fp32 objects | "
            "F1 vs truth | status |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in rows.items():
            if not isinstance(row, dict):
                continue
            if "max_abs_diff" not in row:
                lines.append(f"| {name} | | | | | {row.get('status')}: {row.get('detail')} |")
                continue
            truth = f"{row['f1_vs_truth']:.3f}" if "f1_vs_truth" in row else ""
            lines.append(
                f"| {name} | {row['max_abs_diff']:.2e} | {row['mean_abs_diff']:.2e} | "
                f"{row['f1_vs_reference']:.3f} | {truth} | {row.get('status', 'reference')} |"
            )
        lines.append("")
    if "stages" in sections and "seconds" in sections["stages"]:
        stages = sections["stages"]
        names = list(stages["mp_per_s"])
        lines += [
            f"## Stages ({stages['fields']} fields of {stages['side']} x {stages['side']}, "
            f"{stages['features']} features, backend {stages['backend'].get('backend')} on "
            f"{stages['backend'].get('device')})",
            "",
            "| " + " | ".join(f"{n} MP/s" for n in names) + " |",
            "|" + "---|" * len(names),
            "| " + " | ".join(f"{stages['mp_per_s'][n]:.2f}" for n in names) + " |",
            "",
        ]
    if "plate" in sections and "seconds" in sections["plate"]:
        plate = sections["plate"]
        lines += [
            "## Plate run",
            "",
            f"{plate['fields']} fields of {plate['side']} x {plate['side']}, "
            f"{plate['features']} features, layout `{plate['layout']['summary']}`: "
            f"{plate['seconds']:.1f} s (cluster start {plate['cluster_start_seconds']:.1f} s "
            f"apart), **{plate['mp_per_s']:.2f} MP/s**, {plate['objects']} objects, "
            f"{plate['failed']} failed fields, backends {', '.join(plate['backends'])}.",
            "",
        ]
    if "training" in sections and "steps_per_s" in sections["training"]:
        run = sections["training"]
        lines += [
            "## Training",
            "",
            f"{run['steps']} steps of {run['batch']} patches of {run['patch']} x {run['patch']} "
            f"on {run['device']} ({run['loaders']} loader processes): "
            f"**{run['steps_per_s']:.1f} steps/s** ({run['steps_per_s'] * run['batch']:.0f} "
            f"patches/s), loss by epoch {run['loss']}, validation F1 {run['validation_f1']}.",
            "",
        ]
    for name, section in sections.items():
        if isinstance(section, dict) and section.get("status") in ("skipped", "failed"):
            lines.append(f"- {name}: {section['status']}: {section.get('detail', '')}")
    return "\n".join(lines).rstrip() + "\n"


def failures(sections: dict[str, Any]) -> list[str]:
    """Every check that failed, named."""
    failed = []
    for name, section in sections.items():
        rows = section if isinstance(section, list) else [section]
        if isinstance(section, dict) and name == "agreement":
            rows = [dict(row, backend=key) for key, row in section.items() if isinstance(row, dict)]
        for row in rows:
            if isinstance(row, dict) and row.get("status") == "failed":
                failed.append(f"{name}: {row.get('backend', '')} {row.get('detail', '')}".strip())
    return failed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder for the JSON and table.")
    parser.add_argument(
        "--quick", action="store_true", help="Tiny sizes: checks the plumbing in seconds."
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    from cellseg_hcs import load_model

    gpu = has_gpu()
    sizes = SIZES["quick" if args.quick else "gpu" if gpu else "cpu"]
    if not gpu:
        print(NO_GPU, flush=True)
    model = load_model("nuclei")
    kinds, absent = backend_kinds()
    results: dict[str, Any] = {
        "gpu": gpu,
        "note": "" if gpu else NO_GPU,
        "command": "python benchmarks/gpu_check.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "sizes": sizes._asdict(),
        "backends": kinds,
        "absent": absent,
        "machine": machine(),
        "model_hash": model.hash,
        "sections": {},
    }
    sections = results["sections"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        steps = {
            "smoke": lambda: smoke(model, kinds, absent, sizes),
            "network": lambda: network_speed(model, measured_kinds(kinds, gpu), sizes),
            "agreement": lambda: agreement(
                model, measured_kinds(kinds, gpu), sizes, folder / "agreement"
            ),
            "stages": lambda: stage_split(sizes, folder / "stages"),
            "plate": lambda: plate_run(sizes, folder / "plate", processes=not args.quick),
            "training": lambda: training(sizes, gpu),
        }
        for name, step in steps.items():
            elapsed = time.perf_counter() - started
            if elapsed > sizes.budget_seconds:
                sections[name] = {
                    "status": "skipped",
                    "detail": f"time budget of {sizes.budget_seconds:.0f} s spent",
                }
                continue
            print(f"{name} ({elapsed:.0f} s so far)", file=sys.stderr, flush=True)
            (folder / name).mkdir()
            try:
                sections[name] = step()
            except Exception as exc:  # noqa: BLE001 - recorded; the next section runs
                sections[name] = {"status": "failed", "detail": f"{type(exc).__name__}: {exc}"}
    results["seconds"] = time.perf_counter() - started
    results["failed"] = failures(sections)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    if results["failed"]:
        print("failed: " + "; ".join(results["failed"]), file=sys.stderr)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
