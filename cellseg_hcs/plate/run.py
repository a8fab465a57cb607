"""The plate run: every field of an OME-Zarr HCS plate through dask into labels and tables.

:func:`run_plate` is the one function behind ``cellseg-hcs run``. It checks everything it
can before writing anything, then maps two tasks over each field (see
:mod:`cellseg_hcs.plate.tasks`), keeping a bounded number of fields in flight so memory does
not grow with the plate, and finally writes ``images.parquet`` and ``run.json``. Outputs are
described in :mod:`cellseg_hcs.io.tables`.

A run can be stopped at any point (even by SIGKILL) and started again with the same
command: fields with a record are skipped, the others are (re)computed, and since every
field writes its own files under fixed names, no object is ever written twice.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..io import tables
from ..settings import FieldSettings, settings_for
from .cluster import connect, run_fields
from .manifest import read_manifest, write_manifest
from .plan import OUTPUT_PARAMETERS, PlatePlan, plan_run
from .tasks import STATUS_FAILED, is_finished

log = logging.getLogger("cellseg_hcs.plate")


@dataclass
class PlateRunResult:
    """What a plate run did: where its outputs are, and one row per field."""

    out: Path
    plate: Path
    images: pd.DataFrame
    computed: int
    skipped: int
    seconds: float
    scale: float = 1.0
    """The network ran on every field resampled by this factor (``diameter``)."""
    measured_diameter: float | None = None
    """The objects' median diameter that ``diameter="auto"`` measured, in pixels."""
    report: Path | None = None
    """The run's QC page (``out/report.html``), or None when it could not be written."""
    report_error: str | None = None
    """Why the QC page could not be written (the run itself is not affected)."""
    object_name: str = "Nuclei"
    """The model's objects, as this run names them (one row per object in ``features/``)."""

    @property
    def failed(self) -> int:
        return int((self.images["status"] == STATUS_FAILED).sum())

    @property
    def counts(self) -> dict[str, int]:
        """How many objects of each set (``Nuclei``, ``Cells``, ``Micronuclei``...) the
        plate's fields hold."""
        return {
            column.removeprefix("Count_"): int(self.images[column].sum())
            for column in self.images.columns
            if column.startswith("Count_")
        }

    @property
    def objects(self) -> int:
        """How many of the model's objects (rows of ``features/``) the fields hold."""
        return self.counts.get(self.object_name, 0)


def run_plate(
    plate: str | Path,
    out: str | Path,
    *,
    model: Any = "nuclei",
    settings: FieldSettings | None = None,
    object_name: str = "Nuclei",
    features: str | list[str] = "default",
    wells: list[str] | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> PlateRunResult:
    """Segment and measure every field of an OME-Zarr HCS plate.

    Writes ``labels/<object_name>`` into each field of the plate, and into ``out``: one
    features parquet per field, ``images.parquet`` (one row per field) and ``run.json``.
    Everything is checked before anything is written; a field that fails is recorded in
    ``images.parquet`` and the rest of the plate goes on.

    Parameters
    ----------
    plate:
        The OME-Zarr HCS plate (NGFF 0.4 or 0.5).
    out:
        The output folder. Running again with the same folder skips finished fields.
    model:
        A built-in model name, a ``.safetensors`` model file, or a loaded
        :class:`~cellseg_hcs.model.model.Model`.
    settings, options:
        How each field is segmented: a :class:`~cellseg_hcs.settings.FieldSettings`, or its
        fields as keywords (``channel="DNA"``, ``diameter=45``, ``backend=``, ``device=``...).
        ``diameter="auto"`` (the default) measures the objects on the plate's first fields
        and runs every field at the one scale that follows (a plate is one magnification).
    object_name:
        What the objects are called in labels and columns (``Nuclei_AreaShape_Area``).
    features:
        ``minimal``, ``default`` or ``full`` (see :data:`cellseg_hcs.field.measure.FEATURE_SETS`),
        or a list of feature groups.
    wells:
        Only these wells (``["B03", "B04"]``); all wells by default.
    workers:
        Worker processes of the local dask cluster (default: sized to the machine).
    scheduler:
        Address of a running dask scheduler (``tcp://host:8786``), or a
        ``distributed.Client``, to run on instead of a local cluster.
    overwrite:
        Recompute fields that are already finished.
    progress:
        Show a progress bar.

    Examples
    --------
    >>> result = run_plate("plate.zarr", "results/", channel="DNA")  # doctest: +SKIP
    >>> result.images[["Metadata_Well", "Count_Nuclei", "status"]]  # doctest: +SKIP
    """
    started = time.perf_counter()
    settings = settings_for(model, settings, options)
    plan = plan_run(
        plate,
        out,
        model=model,
        settings=settings,
        object_name=object_name,
        features=features,
        wells=wells,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
    )
    with connect(scheduler, workers) as (client, inference_threads):
        _prepare_output(plan, overwrite)
        jobs = plan.jobs(threads=inference_threads)
        todo = jobs if overwrite else [j for j in jobs if not is_finished(j)]
        skipped = len(jobs) - len(todo)
        if skipped:
            log.info(
                "%d of %d field(s) already finished in %s; skipping them",
                skipped,
                len(jobs),
                plan.out,
            )
        run_fields(
            client, todo, total=len(jobs), done=skipped, progress=progress, object_name=object_name
        )
    records = tables.read_all_status(plan.out)
    images = tables.images_table(records, object_name)
    tables.write_parquet(plan.out / tables.IMAGES_TABLE, images)
    seconds = time.perf_counter() - started
    result = PlateRunResult(
        plan.out,
        plan.plate.path,
        images,
        len(todo),
        skipped,
        seconds,
        plan.parameters["scale"],
        plan.parameters.get("measured_diameter"),
        object_name=plan.object_name,
    )
    write_manifest(
        plan,
        finished={
            "fields": len(images),
            "failed": result.failed,
            "objects": result.objects,
            "counts": result.counts,
            "computed": len(todo),
            "skipped": skipped,
            "seconds": round(seconds, 2),
        },
    )
    result.report, result.report_error = _write_report(plan.out)
    return result


def _write_report(out: Path) -> tuple[Path | None, str | None]:
    """The run's QC page, ``out/report.html`` (:mod:`cellseg_hcs.report`), written again on
    every run so a resumed run's page shows the whole plate. A page that cannot be made
    never fails the run: it is a warning, and the reason is kept on the result."""
    try:
        from ..report import write_report

        return write_report(out), None
    except Exception as exc:  # noqa: BLE001 - the run's outputs are written; the page is extra
        reason = str(exc) or type(exc).__name__
        log.warning("no QC report written for %s: %s", out, reason)
        return None, reason


def _prepare_output(plan: PlatePlan, overwrite: bool) -> None:
    out = plan.out
    if overwrite:
        old = (read_manifest(out) or {}).get("parameters", {})
        if any(k in old and old[k] != plan.parameters[k] for k in OUTPUT_PARAMETERS):
            # Outputs made with other settings must not mix with these ones.
            for name in (tables.FEATURES_DIR, tables.OBJECTS_DIR, tables.STATUS_DIR):
                shutil.rmtree(out / name, ignore_errors=True)
            (out / tables.IMAGES_TABLE).unlink(missing_ok=True)
    if Path(plan.model_path).is_absolute() and not Path(plan.model_path).is_file():
        plan.model.save(plan.model_path)
    write_manifest(plan, finished=None)
