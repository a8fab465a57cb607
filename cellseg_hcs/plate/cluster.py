"""Where a plate run's tasks run: the local cluster or a given one, and the task window.

:func:`connect` gives the run a dask client: the caller's own, one joined by address, or a
local cluster laid out for the machine (:mod:`cellseg_hcs.plate.layout`: on a GPU, one
predictor process per GPU beside CPU worker processes that post-process and measure).
:func:`run_fields` submits two tasks per field (:mod:`cellseg_hcs.plate.tasks`), the network
task on a GPU worker where there is one and the finishing task on a CPU worker where they
are told apart, at most a few fields ahead of the workers, and follows them to the end with
a progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from ..errors import SettingError
from .layout import (
    CPU_RESOURCE,
    GPU_RESOURCE,
    PREDICT_GPU_SHARE,
    PlateLayout,
    machine_layout,
)
from .tasks import FINISHED, FieldJob, failed_record, finish_field, predict_field

log = logging.getLogger("cellseg_hcs.plate")

PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"
MALLOC_TRIM_DEFAULT = (65536, "65536")  # distributed's own default, not a user's choice


@contextlib.contextmanager
def connect(
    scheduler: Any = None,
    workers: int | None = None,
    device: str | None = None,
    layout: PlateLayout | None = None,
) -> Iterator[tuple[Any, int | None]]:
    """``(client, inference threads per worker)`` for a run; closes what it started.

    ``scheduler`` is a ``distributed.Client`` (used as it is, left open), a scheduler
    address, or None for a local cluster laid out for this machine (``layout``, by default
    :func:`~cellseg_hcs.plate.layout.machine_layout` of ``workers`` and ``device``).
    """
    from distributed import Client

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
    layout = layout or machine_layout(workers, device)
    log.info("local dask cluster, %s", layout.summary())
    cluster = local_cluster(layout)
    client = Client(cluster)
    log.info("dask dashboard: %s", client.dashboard_link)
    try:
        yield client, layout.inference_threads
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


def local_cluster(layout: PlateLayout, processes: bool = True):
    """A dask cluster on this machine with the layout's worker groups.

    ``LocalCluster`` makes identical workers only; a GPU layout mixes predictor workers
    (a GPU each, several threads) with single-threaded CPU workers, so the cluster is a
    ``SpecCluster`` given one spec per worker, with ``LocalCluster``'s own defaults
    (loopback, a free dashboard port, each worker an equal share of the memory).
    ``processes=False`` runs the workers as threads of this process (tests: no start-up,
    and no per-worker environment).

    Worker processes start without dask's default ``MALLOC_TRIM_THRESHOLD_=65536``
    (:data:`MALLOC_TRIM_DEFAULT`; a value a user configured is kept): setting it turns off
    glibc's adaptive mmap threshold, so every large numpy temporary is mapped and unmapped
    again, and measuring a field took 2.1 times as long (benchmarks/README.md, "Plate stage
    split").
    """
    import dask
    from distributed import Nanny, Scheduler, SpecCluster, Worker

    share = 1 / max(layout.processes, 1)
    workers = {}
    for group_index, group in enumerate(layout.groups):
        for index in range(group.processes):
            options: dict[str, Any] = {
                "nthreads": group.threads,
                "resources": dict(group.resources) or None,
                "memory_limit": share if processes else 0,
                "host": "127.0.0.1",
                "silence_logs": logging.WARNING,
            }
            if processes and group.env:
                options["env"] = dict(group.env)
            name = f"{group.role}-{group.gpu if group.gpu is not None else group_index}-{index}"
            workers[name] = {"cls": Nanny if processes else Worker, "options": options}
    scheduler = {
        "cls": Scheduler,
        # ":0": a free port for the dashboard (when bokeh is installed), so runs never collide.
        "options": {"host": "127.0.0.1", "port": 0, "dashboard_address": ":0"},
    }
    trim = f"{PRE_SPAWN_ENVIRON}.MALLOC_TRIM_THRESHOLD_"
    unset = {trim: None} if dask.config.get(trim, None) in MALLOC_TRIM_DEFAULT else {}
    with dask.config.set(unset):  # the nannies read it as they are made, here
        return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING)


def cluster_workers(client) -> dict[str, dict[str, Any]]:
    """Every worker the scheduler knows, with its threads and resources.

    ``scheduler_info()`` lists only the first few workers on some ``distributed`` releases
    (``n_workers=5`` by default); ``n_workers=-1`` asks for all where it is understood.
    """
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # releases before the argument, which list every worker
        info = client.scheduler_info()
    return dict(info.get("workers", {}))


def _gpu_resource(client) -> dict[str, float] | None:
    """A network task's share of a GPU, asked only where some worker advertises one (or the
    task would never run)."""
    workers = cluster_workers(client)
    if any(info.get("resources", {}).get(GPU_RESOURCE) for info in workers.values()):
        return {GPU_RESOURCE: PREDICT_GPU_SHARE}
    return None


def _cpu_resource(client) -> dict[str, float] | None:
    """``CPU=1`` for finishing tasks where CPU workers advertise it (the GPU layout), so
    post-processing and measurement stay off the predictor processes."""
    workers = cluster_workers(client)
    if any(info.get("resources", {}).get(CPU_RESOURCE) for info in workers.values()):
        return {CPU_RESOURCE: 1}
    return None


def _in_flight_limit(client) -> int:
    """Fields submitted ahead: two per worker thread, counted over every worker
    (``Client.nthreads`` answers for all of them on every release)."""
    threads = sum(client.nthreads().values()) or 1
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
    finishing = _cpu_resource(client)
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
            finish_field,
            job,
            predicted,
            key=f"finish-{name}",
            resources=finishing,
            pure=False,
            priority=1,
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
