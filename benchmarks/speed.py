"""Speed harness: megapixels per second per stage, for every backend and the classic baseline.

One command measures everything in one run, so the ratios hold on a noisy machine:

    python benchmarks/speed.py                   # all available backends, defaults below
    python benchmarks/speed.py --backends torch@cuda,tensorrt   # some of them

Every available backend is timed on each kind of device it has here: the CPU, and the first
CUDA GPU (``torch@cuda:0``, ``tensorrt@cuda:0``, ``onnxruntime@cuda`` with onnxruntime-gpu).

* **stages** (read, normalize, network, post-process, whole) on the mnfinder test images
  (``../shared/data/mnfinder/images/test__*``; ``tests/data`` in a fresh clone) and on
  2160x2160 fields (montages of those images), for each available backend and for the
  classic Otsu + watershed pipeline (``classic.py``). Each measurement runs in a fresh
  process, after one warm-up field, and reports that process's peak memory (max RSS).
* **whole command**: ``cellseg-hcs segment`` over a few dozen images, start-up included,
  against ``classic.py`` over the same images, alternated ``--repeats`` times (median).

Results go to ``benchmarks/results/speed.json`` and to the table in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_IMAGES = REPO.parent / "shared" / "data" / "mnfinder" / "images"
TEST_IMAGES = REPO / "tests" / "data" / "mnfinder" / "images"
STAGES = ("read", "normalize", "network", "postprocess", "whole")
START, END = "<!-- speed-table:start -->", "<!-- speed-table:end -->"


# ----------------------------------------------------------------------------- workers


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_stages(files: list[Path], stages) -> dict:
    """Seconds per stage over ``files`` (one warm-up field first), CPU time and megapixels.

    ``stages`` are the normalize, network and post-process steps, each taking the previous
    one's result; reading (tifffile) is the first stage of every pipeline.
    """
    import tifffile

    seconds = dict.fromkeys(STAGES, 0.0)
    megapixels = 0.0
    cpu_started = 0.0
    for index, path in enumerate([files[0], *files]):
        if index == 1:
            cpu_started = time.process_time()
        clock = [time.perf_counter()]
        result = image = tifffile.imread(path)
        clock.append(time.perf_counter())
        for stage in stages:
            result = stage(result)
            clock.append(time.perf_counter())
        if index == 0:  # warm-up
            continue
        for stage, begin, end in zip(STAGES, clock, clock[1:]):
            seconds[stage] += end - begin
        seconds["whole"] += clock[-1] - clock[0]
        megapixels += image.size / 1e6
    return {
        "seconds": seconds,
        "megapixels": megapixels,
        "peak_rss_mb": _peak_rss_mb(),
        "cpu_seconds": time.process_time() - cpu_started,
    }


def measure_model(files: list[Path], backend: str, model_name: str, device: str = "cpu") -> dict:
    """Seconds per stage for our pipeline over ``files`` (maps come back to the host, so a
    GPU's work is finished when the network stage's clock stops)."""
    from cellseg_hcs import load_model

    model = load_model(model_name)
    runtime = model.runtime(backend, device)
    # Each stage takes the one before's result: the network passes its input on, as the
    # post-processing reads the image's intensities.
    stages = [
        model.prepare,
        lambda field: (runtime.predict(field), field),
        lambda maps_and_field: model.labels_from_maps(*maps_and_field),
    ]
    return {**time_stages(files, stages), "backend": runtime.describe()}


def measure_classic(files: list[Path]) -> dict:
    """Seconds per stage for the classic pipeline (its 'network' is threshold + distance)."""
    sys.path.insert(0, str(HERE))
    import classic

    stages = [
        classic.smooth,
        classic.foreground_and_distance,
        lambda mask_and_distance: classic.declump(*mask_and_distance),
    ]
    return {
        **time_stages(files, stages),
        "backend": {"backend": "classic (Otsu + watershed, scikit-image)"},
    }


def _worker(argv: list[str]) -> None:
    kind, model_name, *files = argv
    paths = [Path(f) for f in files]
    if kind == "classic":
        result = measure_classic(paths)
    else:
        backend, _, device = kind.partition("@")
        result = measure_model(paths, backend, model_name, device or "cpu")
    print(json.dumps(result))


def timed_backends(report: dict, asked: list[str] | None = None) -> list[str]:
    """``backend@device`` for every available backend on each kind of device it has here
    (the CPU, and its first CUDA GPU), optionally only those ``asked`` (``torch`` for all
    of torch's, ``torch@cuda`` for one).

    Examples
    --------
    >>> from cellseg_hcs.runtime import Availability
    >>> timed_backends({"torch": Availability(True, devices=("cpu", "cuda:0", "cuda:1"))})
    ['torch@cpu', 'torch@cuda:0']
    """
    kinds = []
    for name, availability in report.items():
        if not availability.ok:
            continue
        cuda = [d for d in availability.devices if d.startswith("cuda")]
        devices = (["cpu"] if "cpu" in availability.devices else []) + cuda[:1]
        kinds += [f"{name}@{device}" for device in devices]
    if not asked:
        return kinds
    wanted = []
    for item in asked:
        name, _, device = item.partition("@")
        matches = [
            kind
            for kind in kinds
            if kind.startswith(f"{name}@") and kind.partition("@")[2].startswith(device)
        ]
        # Not available here: kept as asked, so its worker fails with the backend's sentence.
        wanted += matches or [f"{name}@{device or 'cpu'}"]
    return list(dict.fromkeys(wanted))


def _run_worker(kind: str, model: str, files: list[Path]) -> dict:
    command = [sys.executable, __file__, "--worker", kind, model, *map(str, files)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"worker {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- data


def test_images() -> list[Path]:
    shared = sorted(SHARED_IMAGES.glob("test__*"))
    return shared or sorted(TEST_IMAGES.glob("*.tif"))


def montage_fields(images: list[Path], count: int, folder: Path, side: int = 2160) -> list[Path]:
    """2160x2160 uint16 fields tiled from the test images (each rescaled to a common range)."""
    import tifffile

    rng = np.random.default_rng(0)
    blocks = []
    for path in images:
        image = tifffile.imread(path).astype(np.float32)
        low, high = np.percentile(image, [1, 99.8])
        blocks.append(np.clip((image - low) / max(high - low, 1e-6), 0, 1.2)[:512, :512])
    fields = []
    for index in range(count):
        rows = []
        for _ in range(-(-side // 512)):
            picks = rng.integers(0, len(blocks), size=-(-side // 512))
            rows.append(
                np.concatenate(
                    [
                        np.pad(
                            blocks[p],
                            ((0, 512 - blocks[p].shape[0]), (0, 512 - blocks[p].shape[1])),
                            mode="reflect",
                        )
                        for p in picks
                    ],
                    axis=1,
                )
            )
        field = (np.concatenate(rows)[:side, :side] * 4000 + 100).astype(np.uint16)
        path = folder / f"field{index}_{side}.tif"
        tifffile.imwrite(path, field)
        fields.append(path)
    return fields


# ----------------------------------------------------------------------------- whole command


def whole_command(
    images: list[Path],
    repeats: int,
    workdir: Path,
    diameters: list[str] = (),
    model: str = "nuclei",
) -> dict:
    """Wall seconds of ``cellseg-hcs segment --model MODEL`` (also with each ``--diameter``
    given) and of ``classic.py`` on the same images."""
    script = Path(sys.executable).parent / "cellseg-hcs"
    ours = [
        str(script) if script.exists() else "cellseg-hcs",
        "segment",
        *map(str, images),
        "--model",
        str(model),
    ]
    commands = {"cellseg-hcs segment": [*ours, "--out"]}
    for diameter in diameters:
        commands[f"cellseg-hcs segment --diameter {diameter}"] = [
            *ours,
            "--diameter",
            str(diameter),
            "--out",
        ]
    commands["classic"] = [sys.executable, str(HERE / "classic.py"), *map(str, images), "--out"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    subprocess.run(
        [*ours, "--out", str(workdir / "warm")], check=True, capture_output=True, env=env
    )
    for repeat in range(repeats):
        for index, (name, command) in enumerate(commands.items()):
            out = workdir / f"command{index}-{repeat}"
            started, cpu = time.perf_counter(), _children_cpu()
            subprocess.run([*command, str(out)], check=True, capture_output=True, env=env)
            walls[name].append(time.perf_counter() - started)
            cpus[name].append(_children_cpu() - cpu)
            shutil.rmtree(out, ignore_errors=True)
    megapixels = sum(_pixels(p) for p in images) / 1e6
    return {
        "images": len(images),
        "megapixels": megapixels,
        "seconds": {k: statistics.median(v) for k, v in walls.items()},
        "cpu_seconds": {k: statistics.median(v) for k, v in cpus.items()},
        "all_seconds": walls,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pixels(path: Path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as handle:
        return int(np.prod(handle.pages[0].shape[:2]))


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    from cellseg_hcs.runtime import default_cpu_threads

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": default_cpu_threads(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average": os.getloadavg(),
    }


def table(results: dict) -> str:
    lines = [
        "| data | pipeline | "
        + " | ".join(f"{s} MP/s" for s in STAGES)
        + " | x classic (whole) | CPU s / MP | peak RSS MB |",
        "|---|---|" + "---|" * (len(STAGES) + 3),
    ]
    for data, rows in results["stages"].items():
        classic_speed = rows["classic"]["megapixels"] / rows["classic"]["seconds"]["whole"]
        for name, row in rows.items():
            speeds = [row["megapixels"] / max(row["seconds"][s], 1e-9) for s in STAGES]
            lines.append(
                f"| {data} | {name} | "
                + " | ".join(f"{v:.2f}" for v in speeds)
                + f" | {speeds[-1] / classic_speed:.2f} | "
                f"{row['cpu_seconds'] / row['megapixels']:.2f} | "
                f"{row['peak_rss_mb']:.0f} |"
            )
    whole = results.get("whole_command")
    if whole:
        ours = whole["megapixels"] / whole["seconds"]["cellseg-hcs segment"]
        theirs = whole["megapixels"] / whole["seconds"]["classic"]
        lines += [
            "",
            f"Whole command over {whole['images']} images "
            f"({whole['megapixels']:.1f} MP, start-up included, median of "
            f"{len(whole['all_seconds']['classic'])}): `cellseg-hcs segment` "
            f"**{ours:.2f} MP/s**, classic {theirs:.2f} MP/s: "
            f"**{ours / theirs:.2f}x** the classic pipeline. CPU time (all threads): "
            f"{whole['cpu_seconds']['cellseg-hcs segment']:.1f} s vs "
            f"{whole['cpu_seconds']['classic']:.1f} s.",
        ]
        for name, seconds in whole["seconds"].items():
            if "--diameter" in name:
                speed = whole["megapixels"] / seconds
                lines.append(
                    f"With `{name.removeprefix('cellseg-hcs segment ')}`: "
                    f"**{speed:.2f} MP/s**, **{speed / theirs:.2f}x** the classic "
                    "pipeline."
                )
    info = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in info["load_average"])
    lines += [
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores used, Python "
        f"{info['python']}, load average {load} at the start. "
        f"Model: `{results['model']}` ({results['model_hash']}). "
        f"Command: `{results['command']}`. Date: {results['date']}.",
    ]
    return "\n".join(lines)


def write_readme(text: str, readme: Path) -> None:
    current = readme.read_text() if readme.is_file() else f"{START}\n{END}\n"
    head, _, rest = current.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        _worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument(
        "--backends",
        default=None,
        help="Comma-separated backends, each optionally @device (torch@cuda); default: every "
        "available backend on the CPU and on the first GPU.",
    )
    parser.add_argument("--fields", type=int, default=3, help="2160x2160 fields to time.")
    parser.add_argument(
        "--command-images",
        type=int,
        default=48,
        help="Images for the whole-command comparison (test images repeated).",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--diameters",
        default="",
        help="Also time the whole command with these --diameter values "
        "(comma-separated), e.g. native,60.",
    )
    parser.add_argument("--json", type=Path, default=HERE / "results" / "speed.json")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    args = parser.parse_args(argv)

    from cellseg_hcs import load_model
    from cellseg_hcs.runtime import backend_report

    backends = timed_backends(backend_report(), args.backends.split(",") if args.backends else None)
    images = test_images()
    results: dict = {
        "machine": machine(),
        "model": args.model,
        "model_hash": load_model(args.model).hash,
        "command": "python benchmarks/speed.py " + " ".join(argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "stages": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        fields = montage_fields(images, args.fields, workdir)
        for data, files in (
            (f"mnfinder test ({len(images)} images)", images),
            (f"2160x2160 fields ({len(fields)})", fields),
        ):
            rows = {}
            for kind in ["classic", *backends]:
                print(f"stages: {data}: {kind}", file=sys.stderr, flush=True)
                rows[kind] = _run_worker(kind, args.model, files)
            results["stages"][data] = rows
        if args.command_images:
            copies = workdir / "command"
            copies.mkdir()
            chosen = []
            for index in range(args.command_images):
                source = images[index % len(images)]
                chosen.append(copies / f"{index:03d}_{source.name}")
                shutil.copy(source, chosen[-1])
            print("whole command", file=sys.stderr, flush=True)
            diameters = [d for d in args.diameters.split(",") if d]
            results["whole_command"] = whole_command(
                chosen, args.repeats, workdir, diameters, args.model
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    text = table(results)
    write_readme(text, args.readme)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
