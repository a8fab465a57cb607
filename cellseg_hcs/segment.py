"""Segmenting image files: the library function behind ``cellseg-hcs segment``.

Files go through the stages of :class:`~cellseg_hcs.field.pipeline.FieldPipeline`, overlapped
in three threads: reading and preparing the next field, the network on the current one,
post-processing and writing the previous one (the network libraries and the watershed
release the GIL), so the network is never idle waiting for disk or for the watershed; the
results are identical to running the stages one after the other.

With ``diameter="auto"`` (the default) the post-processing stage also measures the objects'
size; a field whose objects are far from the model's working diameter goes back to the
network once, resampled (the pipeline decides: :meth:`FieldPipeline.second_scale`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CellSegError, InputError, SomeInputsFailed
from .field.pipeline import FieldChannels, FieldPipeline, FieldResult, PreparedField
from .io.atomic import output_folder
from .io.images import channel_names, read_image, write_labels
from .settings import FieldSettings, settings_for

log = logging.getLogger(__name__)

PREFETCH = 2  # fields read ahead of the network
IMAGE_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr")


@dataclass
class SegmentResult:
    """What segmenting one file produced."""

    image: Path
    labels: Path
    count: int
    seconds: float
    scale: float = 1.0
    diameter: float | None = None  # the objects' median diameter measured by "auto"
    outputs: dict[str, Path] = field(default_factory=dict)
    """Every label image written, by object set (``Nuclei``, and ``Cells``... when made)."""
    notes: list[str] = field(default_factory=list)
    """What a person should know about the image (a blank image)."""
    counts: dict[str, int] = field(default_factory=dict)
    """How many objects of each set, by name (``count`` is the model's objects')."""


@dataclass
class _Resample:
    """A field whose first pass found objects far from the model's size: run it again."""

    index: int
    path: Path
    field: PreparedField
    first: FieldResult  # kept should the second pass fail
    scale: float
    diameter: float
    seconds: float


def output_stem(path: Path) -> str:
    """The name an image's outputs start with: ``a.tif`` and ``a.ome.tif`` both give ``a``."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def label_file_name(stem: str, object_name: str, primary: str) -> str:
    """``<stem>_labels.tif`` for the model's objects, ``<stem>_<object>_labels.tif`` else."""
    if object_name == primary:
        return f"{stem}_labels.tif"
    return f"{stem}_{object_name.lower()}_labels.tif"


def parent_map(labels: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Each object's pixels holding its parent's number (0: none), as annotated parent maps
    are (mnfinder's ``micronuclei_parent``): ``parents[k - 1]`` is object k's parent.

    Examples
    --------
    >>> parent_map(np.array([[1, 0, 2, 2]], np.uint16), np.array([7, 0]))
    array([[7, 0, 0, 0]], dtype=uint16)
    """
    from .field.postprocess import label_dtype

    parents = np.asarray(parents, dtype=np.int64)
    lookup = np.zeros(int(labels.max()) + 1, dtype=label_dtype(int(parents.max(initial=0))))
    lookup[1 : 1 + len(parents)] = parents[: len(lookup) - 1]
    return lookup[labels]


def segment_files(
    images: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | Path | Any = "nuclei",
    settings: FieldSettings | None = None,
    progress: bool = True,
    **options: Any,
) -> list[SegmentResult]:
    """Segment every image file and write ``out/<stem>_labels.tif`` for each.

    All inputs are checked to exist, and the settings, the backend and the output folder,
    before any output is written. An image that cannot be read or segmented (corrupt, NaN
    pixels, without the asked channel) does not stop the others: it is skipped, and at the end
    :class:`~cellseg_hcs.errors.SomeInputsFailed` names what failed (with what was done in
    ``.results``); when every image fails, the first one's :class:`InputError` is raised.

    Parameters
    ----------
    images:
        Image files (TIFF, PNG, and whatever bioio reads).
    out:
        The folder for the label images.
    model:
        A built-in model name, a model file or a loaded :class:`~cellseg_hcs.model.model.Model`.
    settings, options:
        A :class:`~cellseg_hcs.settings.FieldSettings`, or its fields as keywords
        (``channel=``, ``diameter=``, ``backend=``, ``device=``, ``probabilities=``...).
    progress:
        Show a progress bar.

    Examples
    --------
    >>> results = segment_files(["a.tif", "b.tif"], "labels/")  # doctest: +SKIP
    >>> results[0].count  # doctest: +SKIP
    212
    """
    paths = [Path(p) for p in images]
    _check_inputs(paths)
    settings = settings_for(model, settings, options)
    if isinstance(model, (str, Path)):
        from .model.model import load_model

        model = load_model(settings.model)
    pipeline = model.pipeline(settings)
    pipeline.runtime  # noqa: B018 - the backend is chosen (or refused) before anything is written
    created = not Path(out).exists()
    run = _FileRun(pipeline, output_folder(out))
    results, failures = run.segment(paths, progress)
    if failures and not results:
        if created and not any(run.out.iterdir()):
            run.out.rmdir()  # nothing was written: leave no empty folder behind
        first = failures[0][1]
        if len(failures) == 1:
            raise first
        raise type(first)(f"{first} (the other {len(failures) - 1} image(s) failed too)")
    if failures:
        raise SomeInputsFailed(
            f"{len(failures)} of {len(paths)} image(s) could not be segmented; the other "
            f"{len(results)} were written to {run.out}.",
            results,
            [(path, str(exc)) for path, exc in failures],
        )
    return results


class _FileRun:
    """Image files through the field recipe's stages, in three threads: the reader prepares
    the next fields, this thread runs the network, the finisher makes and writes objects."""

    def __init__(self, pipeline: FieldPipeline, out: Path) -> None:
        self.pipeline = pipeline
        self.out = out
        self.done: list[tuple[int, SegmentResult]] = []
        self.pending: list[Future] = []

    def segment(
        self, paths: list[Path], progress: bool
    ) -> tuple[list[SegmentResult], list[tuple[Path, CellSegError]]]:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        failures: list[tuple[Path, CellSegError]] = []
        scale = self.pipeline.first_scale()
        with (
            ThreadPoolExecutor(1, "cellseg-read") as reader,
            ThreadPoolExecutor(1, "cellseg-finish") as self.finisher,
            logging_redirect_tqdm(),  # a warning gets a line of its own, above the bar
        ):
            self.bar = tqdm(total=len(paths), desc="segmenting", unit="image", disable=not progress)
            try:
                for index, (path, (prepared, seconds, error)) in enumerate(
                    zip(paths, _read_ahead(reader, self.read, paths))
                ):
                    if error is not None:
                        failures.append((path, error))
                        self.bar.update()
                        continue
                    started = time.perf_counter()
                    maps = self.pipeline.predict(prepared, scale)
                    seconds += time.perf_counter() - started
                    self.pending.append(
                        self.finisher.submit(
                            self.finish, index, path, prepared, maps, seconds, scale, None
                        )
                    )
                    while self.pending and (self.pending[0].done() or len(self.pending) > PREFETCH):
                        self.collect(self.pending.pop(0))
                while self.pending:
                    self.collect(self.pending.pop(0))
            finally:
                self.bar.close()
        return [result for _, result in sorted(self.done, key=lambda item: item[0])], failures

    def read(self, path: Path) -> tuple[PreparedField | None, float, CellSegError | None]:
        """The prepared field and the seconds it took, or None and why it failed."""
        started = time.perf_counter()
        try:
            channels = FieldChannels.from_array(read_image(path), channel_names(path), str(path))
            prepared = self.pipeline.prepare(channels)
        except CellSegError as exc:
            return None, 0.0, exc
        return prepared, time.perf_counter() - started, None

    def finish(
        self,
        index: int,
        path: Path,
        prepared: PreparedField,
        maps: np.ndarray,
        seconds: float,
        scale: float,
        measured: float | None,
    ) -> tuple[int, SegmentResult] | _Resample:
        """Objects from the maps, then written; or the field back to the network ("auto")."""
        started = time.perf_counter()
        result = self.pipeline.objects(prepared, maps, scale, measured)
        again = self.pipeline.second_scale(result)
        if again is not None:
            seconds += time.perf_counter() - started
            return _Resample(index, path, prepared, result, *again, seconds)
        self.pipeline.compartments(prepared, result)
        seconds += time.perf_counter() - started
        return self.write(index, path, result, seconds)

    def write(
        self, index: int, path: Path, result: FieldResult, seconds: float
    ) -> tuple[int, SegmentResult]:
        """Every object set's label image (and the probabilities when asked for)."""
        started = time.perf_counter()
        stem = output_stem(path)
        outputs = {
            name: write_labels(self.out / label_file_name(stem, name, result.primary), labels)
            for name, labels in result.objects.items()
        }
        for name in self.pipeline.model.info.class_objects.values():
            parents = result.parents.get((name, result.primary))
            if name in result.objects and parents is not None:
                write_labels(
                    self.out / f"{stem}_{name.lower()}_parents.tif",
                    parent_map(result.objects[name], parents),
                )
        if result.maps is not None:
            write_labels(self.out / f"{stem}_probabilities.tif", result.maps[0].astype(np.float32))
        seconds += time.perf_counter() - started
        return index, SegmentResult(
            path,
            outputs[result.primary],
            result.count,
            seconds,
            result.scale,
            result.diameter,
            outputs,
            list(result.notes),
            {name: int(labels.max()) for name, labels in result.objects.items()},
        )

    def collect(self, future: Future) -> None:
        """A finished field's result, or its second pass through the network (this thread)."""
        outcome = future.result()
        if not isinstance(outcome, _Resample):
            self.done.append(outcome)
            self.bar.update()
            return
        started = time.perf_counter()
        try:
            maps = self.pipeline.predict(outcome.field, outcome.scale)
        except (CellSegError, MemoryError, RuntimeError) as exc:
            log.warning(
                "%s: running it again at %.2fx failed (%s); its labels are from the image's "
                "own scale",
                outcome.path,
                outcome.scale,
                exc,
            )
            seconds = outcome.seconds + time.perf_counter() - started
            self.pipeline.compartments(outcome.field, outcome.first)
            job = (self.write, outcome.index, outcome.path, outcome.first, seconds)
        else:
            seconds = outcome.seconds + time.perf_counter() - started
            job = (self.finish, outcome.index, outcome.path, outcome.field, maps, seconds)
            job += (outcome.scale, outcome.diameter)
        self.pending.append(self.finisher.submit(*job))


def _check_inputs(paths: list[Path]) -> None:
    """Every input exists, and no two would write the same output name."""
    for path in paths:
        if path.is_dir():
            raise InputError(f"{path} is a folder; give the images in it (e.g. {path}/*.tif).")
        if not path.is_file():
            raise InputError(f"{path}: no such image file.")
    seen: dict[str, Path] = {}
    for path in paths:
        stem = output_stem(path)
        if stem in seen and seen[stem] != path:
            raise InputError(
                f"{seen[stem]} and {path} would both be written as "
                f"{stem}_labels.tif; segment them into separate --out folders."
            )
        seen[stem] = path


def _read_ahead(pool: ThreadPoolExecutor, read, paths: Sequence[Path]) -> Iterator:
    """``read(path)`` for each path in order, keeping up to PREFETCH reads in flight."""
    queued: list[Future] = [pool.submit(read, p) for p in paths[:PREFETCH]]
    for index in range(len(paths)):
        result = queued.pop(0).result()
        if index + PREFETCH < len(paths):
            queued.append(pool.submit(read, paths[index + PREFETCH]))
        yield result
