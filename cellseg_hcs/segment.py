"""Segmenting image files: the library function behind ``cellseg-hcs segment``.

Files go through three stages that overlap: reading and normalizing the next field, the
network on the current one, post-processing and writing the previous one. Each stage runs
in its own thread (the network libraries and the watershed release the GIL), so the
network is never idle waiting for disk or for the watershed; the results are identical to
running the stages one after the other.

With ``diameter="auto"`` (the default) the post-processing stage also measures the objects'
size; a field whose objects are far from the model's working diameter goes back to the
network once, resampled (see :mod:`cellseg_hcs.field.scale`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CellSegError, InputError, SomeInputsFailed
from .field.scale import AUTO, auto_scale, parse_diameter, predict_at_scale, scale_for
from .io.images import channel_names, read_image, write_labels

log = logging.getLogger(__name__)

PREFETCH = 2  # fields read ahead of the network


@dataclass
class SegmentResult:
    """What segmenting one file produced."""

    image: Path
    labels: Path
    count: int
    seconds: float
    scale: float = 1.0
    diameter: float | None = None  # the objects' median diameter measured by "auto"


@dataclass
class _Resample:
    """A field whose first pass found objects far from the model's size: run it again."""

    index: int
    path: Path
    field: np.ndarray
    maps: np.ndarray  # the first pass's, kept should the second one fail
    scale: float
    diameter: float
    seconds: float


def segment_files(
    images: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | Path | Any = "nuclei",
    channel: int | str | None = None,
    backend: str = "auto",
    device: str | None = None,
    probabilities: bool = False,
    progress: bool = True,
    diameter: float | str | None = AUTO,
) -> list[SegmentResult]:
    """Segment every image file and write ``out/<stem>_labels.tif`` for each.

    All inputs are checked to exist, and the backend to run and the output folder, before
    any output is written. An image that cannot be read (corrupt, or without the asked
    channel) does not stop the others: it is skipped, and at the end
    :class:`~cellseg_hcs.errors.SomeInputsFailed` names what failed (with what was done in
    ``.results``); when every image fails, the first one's :class:`InputError` is raised.
    ``model`` is a built-in model name, a model file or a loaded
    :class:`~cellseg_hcs.model.model.Model`. A named model that already ran on onnxruntime here
    runs from its cached ONNX export without importing PyTorch (see
    :mod:`cellseg_hcs.runtime.compiled`); the labels are the same. ``diameter``: the
    objects' diameter in pixels, ``"auto"`` (measured per image, resampling only images whose
    objects are far from the model's size) or None (every image at its own scale).

    Examples
    --------
    >>> results = segment_files(["a.tif", "b.tif"], "labels/")  # doctest: +SKIP
    >>> results[0].count  # doctest: +SKIP
    212
    """
    from tqdm.auto import tqdm

    paths = [Path(p) for p in images]
    for path in paths:
        if path.is_dir():
            raise InputError(f"{path} is a folder; give the images in it (e.g. {path}/*.tif).")
        if not path.is_file():
            raise InputError(f"{path}: no such image file.")
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen and seen[path.stem] != path:
            raise InputError(
                f"{seen[path.stem]} and {path} would both be written as "
                f"{path.stem}_labels.tif; segment them into separate --out folders."
            )
        seen[path.stem] = path
    diameter = parse_diameter(diameter)
    model, runtime = _model_and_runtime(model, backend, device)
    auto = diameter == AUTO
    scale = 1.0 if auto else scale_for(diameter, model.info.working_diameter)
    created = not Path(out).exists()
    out = _output_folder(out)
    failures: list[tuple[Path, CellSegError]] = []

    def read(path: Path) -> tuple[np.ndarray | None, float, CellSegError | None]:
        """The prepared field and the seconds it took, or None and why it failed."""
        started = time.perf_counter()
        try:
            field = model.prepare(read_image(path), channel, channel_names(path))
        except CellSegError as exc:
            return None, 0.0, exc
        return field, time.perf_counter() - started, None

    def finish(
        index: int,
        path: Path,
        field: np.ndarray,
        maps: np.ndarray,
        seconds: float,
        scale: float,
        measured: float | None,
    ) -> tuple[int, SegmentResult] | _Resample:
        started = time.perf_counter()
        labels = model.labels_from_maps(maps, field)
        if auto and measured is None:
            new_scale, measured = auto_scale(labels, model.info.working_diameter)
            if new_scale != 1.0:
                return _Resample(
                    index,
                    path,
                    field,
                    maps,
                    new_scale,
                    measured,
                    seconds + time.perf_counter() - started,
                )
        target = write_labels(out / f"{path.stem}_labels.tif", labels)
        if probabilities:
            write_labels(out / f"{path.stem}_probabilities.tif", maps[0].astype(np.float32))
        return index, SegmentResult(
            path,
            target,
            int(labels.max()),
            seconds + time.perf_counter() - started,
            scale,
            measured,
        )

    done: list[tuple[int, SegmentResult]] = []
    with (
        ThreadPoolExecutor(1, "cellseg-read") as reader,
        ThreadPoolExecutor(1, "cellseg-finish") as finisher,
    ):
        pending: list[Future] = []
        bar = tqdm(total=len(paths), desc="segmenting", unit="image", disable=not progress)

        def collect(future: Future) -> None:
            outcome = future.result()
            if isinstance(outcome, _Resample):  # the network again, in this thread only
                started = time.perf_counter()
                maps, scale_run = outcome.maps, 1.0
                try:
                    maps = predict_at_scale(runtime, outcome.field, outcome.scale)
                    scale_run = outcome.scale
                except (CellSegError, MemoryError, RuntimeError) as exc:
                    log.warning(
                        "%s: running it again at %.2fx failed (%s); its labels are "
                        "from the image's own scale",
                        outcome.path,
                        outcome.scale,
                        exc,
                    )
                seconds = outcome.seconds + time.perf_counter() - started
                pending.append(
                    finisher.submit(
                        finish,
                        outcome.index,
                        outcome.path,
                        outcome.field,
                        maps,
                        seconds,
                        scale_run,
                        outcome.diameter,
                    )
                )
                return
            done.append(outcome)
            bar.update()

        try:
            for index, (path, (field, read_seconds, error)) in enumerate(
                zip(paths, _read_ahead(reader, read, paths))
            ):
                if error is not None:
                    failures.append((path, error))
                    bar.update()
                    continue
                started = time.perf_counter()
                maps = predict_at_scale(runtime, field, scale)
                seconds = read_seconds + time.perf_counter() - started
                pending.append(
                    finisher.submit(finish, index, path, field, maps, seconds, scale, None)
                )
                while pending and (pending[0].done() or len(pending) > PREFETCH):
                    collect(pending.pop(0))
            while pending:
                collect(pending.pop(0))
        finally:
            bar.close()
    results = [result for _, result in sorted(done, key=lambda item: item[0])]
    if failures and not results:
        if created and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty folder behind
        first = failures[0][1]
        if len(failures) == 1:
            raise first
        raise type(first)(f"{first} (the other {len(failures) - 1} image(s) failed too)")
    if failures:
        raise SomeInputsFailed(
            f"{len(failures)} of {len(paths)} image(s) could not be segmented; the other "
            f"{len(results)} were written to {out}.",
            results,
            [(path, str(exc)) for path, exc in failures],
        )
    return results


def _output_folder(out: str | Path) -> Path:
    """``out``, created if needed; one sentence when it is a file or cannot be made."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the label images.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror}.") from None
    return out


def _model_and_runtime(model: Any, backend: str, device: str | None) -> tuple[Any, Any]:
    """The model and its runtime; a named model compiled earlier comes without PyTorch."""
    from .runtime.compiled import compiled_model, remember_compiled

    if not isinstance(model, (str, Path)):
        return model, model.runtime(backend, device)
    compiled = compiled_model(model, backend, device)
    if compiled is not None:
        return compiled, compiled.runtime(backend, device)
    from .model.model import load_model

    loaded = load_model(model)
    runtime = loaded.runtime(backend, device)
    if runtime.name == "onnxruntime" and runtime.describe()["device"] == "cpu":
        from .runtime.export import cached_onnx

        remember_compiled(model, loaded, cached_onnx(loaded))
    return loaded, runtime


def _read_ahead(pool: ThreadPoolExecutor, read, paths: Sequence[Path]) -> Iterator:
    """``read(path)`` for each path in order, keeping up to PREFETCH reads in flight."""
    queued: list[Future] = [pool.submit(read, p) for p in paths[:PREFETCH]]
    for index in range(len(paths)):
        result = queued.pop(0).result()
        if index + PREFETCH < len(paths):
            queued.append(pool.submit(read, paths[index + PREFETCH]))
        yield result
