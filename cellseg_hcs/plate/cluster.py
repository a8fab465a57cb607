"""Where a plate run's tasks run: the local cluster or a given one, and the task window.

:func:`connect` gives the run a dask client: the caller's own, one joined by address, or a
local cluster sized to the machine (:func:`local_cluster_size`). :func:`run_fields` submits
two tasks per field (:mod:`cellseg_hcs.plate.tasks`), at most a few fields ahead of the
workers, and follows them to the end with a progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from ..errors import SettingError
from ..runtime.base import default_cpu_threads
from .tasks import FINISHED, FieldJob, failed_record, finish_field, predict_field

log = logging.getLogger("cellseg_hcs.plate")


def local_cluster_size(workers: int | None = None) -> tuple[int, int]:
    """``(worker processes, threads each)`` for a local cluster on this machine.

    On CPU, one single-threaded process per core (segmentation, labelling and measuring
    are all busy, and processes side-step the GIL), capped by memory at ~2 GB a worker.
    With a CUDA GPU, one process with a thread per core: one thread feeds the GPU while
    the others measure.
    """
    import torch

    cores = default_cpu_threads()
    if workers is None and torch.cuda.is_available():
        return 1, cores
    if workers is None:
        memory_gb = _memory_gb()
        workers = max(1, min(cores, int(memory_gb // 2) if memory_gb else cores))
    return workers, 1


def _memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


@contextlib.contextmanager
def connect(scheduler: Any = None, workers: int | None = None) -> Iterator[tuple[Any, int | None]]:
    """``(client, inference threads per worker)`` for a run; closes what it started.

    ``scheduler`` is a ``distributed.Client`` (used as it is, left open), a scheduler
    address, or None for a local cluster of ``workers`` processes sized to the machine.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler, None  # the caller's own Client: theirs to close
        return
    if isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise SettingError(f"no dask scheduler answers at {scheduler} ({exc}).") from None
        try:
            yield client, None
        finally:
            client.close()
        return
    n_workers, threads = local_cluster_size(workers)
    torch_threads = max(1, default_cpu_threads() // n_workers) if threads == 1 else None
    log.info("local dask cluster: %d worker process(es) x %d thread(s)", n_workers, threads)
    resources = {"GPU": 1} if threads > 1 else None
    # ":0": a free port for the dashboard (when bokeh is installed), so runs never collide.
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=True,
        dashboard_address=":0",
        resources=resources,
        silence_logs=logging.WARNING,
    )
    client = Client(cluster)
    log.info("dask dashboard: %s", client.dashboard_link)
    try:
        yield client, torch_threads
    finally:
        # Worker processes slow to exit are killed by their nanny, which dask reports with
        # tracebacks about closed connections: noise once every field is done.
        dask_log = logging.getLogger("distributed")
        level = dask_log.level
        dask_log.setLevel(logging.CRITICAL)
        try:
            client.close()
            cluster.close()
        finally:
            dask_log.setLevel(level)


def _gpu_resource(client) -> dict[str, int] | None:
    """Ask for a GPU only where some worker advertises one (or the task would never run)."""
    workers = client.scheduler_info().get("workers", {})
    if any(info.get("resources", {}).get("GPU") for info in workers.values()):
        return {"GPU": 1}
    return None


def _in_flight_limit(client) -> int:
    workers = client.scheduler_info().get("workers", {})
    threads = sum(info.get("nthreads", 1) for info in workers.values()) or 1
    return 2 * threads + 2


def run_fields(
    client, jobs: list[FieldJob], *, total: int, done: int, progress: bool, object_name: str
) -> None:
    """Submit two tasks per field, at most a few fields ahead, and follow them to the end."""
    from distributed import as_completed
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    if not jobs:
        return
    resources = _gpu_resource(client)
    limit = _in_flight_limit(client)
    token = os.urandom(4).hex()
    pending = iter(jobs)
    by_key: dict[str, FieldJob] = {}
    futures = as_completed()
    objects = 0
    pixels = 0
    started = time.perf_counter()

    def submit_next() -> bool:
        job = next(pending, None)
        if job is None:
            return False
        name = f"{job.field.name}-{token}"
        predicted = client.submit(
            predict_field, job, key=f"predict-{name}", resources=resources, pure=False
        )
        finished = client.submit(
            finish_field, job, predicted, key=f"finish-{name}", pure=False, priority=1
        )
        by_key[finished.key] = job
        futures.add(finished)
        return True

    for _ in range(limit):
        if not submit_next():
            break
    bar = tqdm(total=total, initial=done, unit="field", desc="fields", disable=not progress)
    redirect = logging_redirect_tqdm()  # a failed field's warning: a line of its own
    redirect.__enter__()
    try:
        for future in futures:
            job = by_key.pop(future.key)
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. every worker running it died
                record = failed_record(
                    job,
                    f"field {job.field.name}: the task did not finish "
                    f"({type(exc).__name__}: {exc}).",
                )
            future.release()
            count = int(record.get(f"Count_{object_name}", 0))
            objects += count
            pixels += int(record.get("Height", 0)) * int(record.get("Width", 0))
            _log_record(record, object_name)
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(objects=objects, MPps=f"{pixels / 1e6 / elapsed:.2f}", refresh=False)
            bar.update(1)
            # Workers may join (adaptive clusters) or leave: keep the window in step.
            limit = _in_flight_limit(client)
            while futures.count() < limit and submit_next():
                pass
    finally:
        redirect.__exit__(None, None, None)
        bar.close()


def _log_record(record: dict[str, Any], object_name: str) -> None:
    name = f"{record['Metadata_Well']}_{record['Metadata_Site']}"
    stages = ", ".join(
        f"{k.removeprefix('Seconds_').lower()} {v:.2f}s"
        for k, v in record.items()
        if k.startswith("Seconds_")
    )
    if record["status"] in FINISHED:
        log.info("%s: %d %s (%s)", name, record.get(f"Count_{object_name}", 0), object_name, stages)
    else:
        log.warning("%s failed: %s", name, record.get("error"))
