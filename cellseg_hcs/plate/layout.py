"""How a plate run uses this machine: which worker processes, their threads and resources.

:func:`choose_layout` is a pure function of the GPUs, the cores and the memory:

* **CPU**: one single-threaded worker process per core (capped at ~2 GB a worker), each
  running whole fields; processes side-step the GIL, and each process's network gets
  ``cores / workers`` intra-op threads.
* **GPU**: one predictor process per GPU, owning that GPU (``CUDA_VISIBLE_DEVICES``),
  advertising ``GPU=1`` and running a few fields at once (one thread each), so its runtime
  fills full batches with tiles from several fields
  (:class:`~cellseg_hcs.runtime.batching.TileBatcher`); and single-threaded CPU worker
  processes, advertising ``CPU=1``, that turn maps into objects, measure and write. The
  GPU never waits for post-processing and measurement fighting over one process's GIL.

A field's network task asks for :data:`PREDICT_GPU_SHARE` of a ``GPU`` (a quarter: four
fields share a GPU's batches), and its finishing task for ``CPU=1`` where some worker
advertises ``CPU``; so the same tasks run unchanged on any dask cluster whose workers
advertise ``GPU`` (e.g. ``dask worker --resources GPU=1 --nthreads 4``).

Examples
--------
>>> choose_layout(gpus=("0",), cores=16, memory_gb=128).summary()
'gpu: 1 predictor process x 4 threads (GPU 0; resources GPU=1) + 15 CPU worker processes x 1 thread (resources CPU=1)'
>>> choose_layout(gpus=(), cores=8, memory_gb=64).summary()
'cpu: 8 worker processes x 1 thread (network: 1 intra-op thread each)'
"""  # noqa: E501

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GPU_RESOURCE = "GPU"
CPU_RESOURCE = "CPU"
PREDICTORS_PER_GPU = 4
"""Threads of a GPU worker: fields predicted at once, whose tiles fill each other's batches
(a 2160 x 2160 field alone is 9 tiles: batches of 4, 4 and 1)."""
PREDICT_GPU_SHARE = 1 / PREDICTORS_PER_GPU
"""What a field's network task asks of a worker's ``GPU`` resource (exact in binary)."""
GB_PER_WORKER = 2.0
GB_PER_GPU_WORKER = 4.0
"""A GPU worker holds several fields, their maps and pinned transfer buffers."""


@dataclass(frozen=True)
class WorkerGroup:
    """Identical worker processes of a local cluster."""

    role: str
    """``fields`` (whole fields, CPU), ``predict`` (a GPU's network) or ``finish``
    (objects, measurement and writing, CPU)."""
    processes: int
    threads: int
    resources: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """Environment of the worker process (a GPU worker sees only its own GPU)."""
    gpu: str | None = None
    """The GPU this group owns, as ``CUDA_VISIBLE_DEVICES`` names it."""

    def describe(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "processes": self.processes,
            "threads": self.threads,
            "resources": dict(self.resources),
            "gpu": self.gpu,
        }


@dataclass(frozen=True)
class PlateLayout:
    """The worker processes of a local plate run, and why."""

    kind: str
    """``cpu`` or ``gpu``."""
    groups: tuple[WorkerGroup, ...]
    inference_threads: int | None
    """Intra-op threads of a CPU network per process (None: GPU backends need none)."""
    reason: str

    @property
    def processes(self) -> int:
        return sum(group.processes for group in self.groups)

    @property
    def threads(self) -> int:
        return sum(group.processes * group.threads for group in self.groups)

    def describe(self) -> dict[str, Any]:
        """The layout for ``run.json``."""
        return {
            "kind": self.kind,
            "summary": self.summary(),
            "reason": self.reason,
            "inference_threads": self.inference_threads,
            "workers": [group.describe() for group in self.groups],
        }

    def summary(self) -> str:
        """One line for ``cellseg-hcs info`` and the log."""
        parts = []
        for group in self.groups:
            noun = {"predict": "predictor process", "finish": "CPU worker process"}.get(
                group.role, "worker process"
            )
            text = (
                f"{group.processes} {noun}{'es' if group.processes != 1 else ''} x "
                f"{group.threads} thread{'s' if group.threads != 1 else ''}"
            )
            details = []
            if group.gpu is not None:
                details.append(f"GPU {group.gpu}")
            if group.resources:
                details.append(
                    "resources " + ", ".join(f"{k}={v:g}" for k, v in group.resources.items())
                )
            if self.kind == "cpu" and self.inference_threads:
                count = self.inference_threads
                details.append(f"network: {count} intra-op thread{'s' if count != 1 else ''} each")
            parts.append(text + (f" ({'; '.join(details)})" if details else ""))
        return f"{self.kind}: " + " + ".join(parts)


def choose_layout(
    *,
    gpus: Sequence[str],
    cores: int,
    memory_gb: float | None,
    workers: int | None = None,
    device: str | None = None,
) -> PlateLayout:
    """The local cluster for a plate run on a machine with these GPUs, cores and memory.

    Parameters
    ----------
    gpus:
        The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (see
        :func:`visible_gpus`); empty on a CPU machine.
    cores, memory_gb:
        CPU cores this process may use, and the machine's memory (None: unknown).
    workers:
        Worker processes asked for (``--workers``): all of them on the CPU; the CPU
        workers beside the predictors on a GPU.
    device:
        The run's ``device`` setting: ``cpu`` keeps the CPU layout on a GPU machine;
        ``cuda:N`` gives one predictor, for GPU N; ``cuda`` or None one per GPU.
    """
    cores = max(int(cores), 1)
    if device == "cpu" or not gpus:
        why = "device cpu asked for" if device == "cpu" and gpus else "no CUDA GPU here"
        return _cpu_layout(cores, memory_gb, workers, why)
    if device is not None and device.startswith("cuda:"):
        index = device.partition(":")[2]
        # The task itself asks for cuda:N, so the process sees every GPU.
        predictors = [WorkerGroup("predict", 1, PREDICTORS_PER_GPU, {GPU_RESOURCE: 1}, gpu=index)]
        why = f"device {device} asked for"
    else:
        predictors = [
            WorkerGroup(
                "predict",
                1,
                PREDICTORS_PER_GPU,
                {GPU_RESOURCE: 1},
                env={"CUDA_VISIBLE_DEVICES": gpu},
                gpu=gpu,
            )
            for gpu in gpus
        ]
        why = f"{len(gpus)} CUDA GPU{'s' if len(gpus) != 1 else ''} here"
    if workers is None:
        # A predictor process mostly waits on its GPU, reading and normalizing between
        # batches: one core each; the other cores post-process and measure.
        workers = max(cores - len(predictors), 1)
        if memory_gb:
            spare = memory_gb - GB_PER_GPU_WORKER * len(predictors)
            workers = max(1, min(workers, int(spare // GB_PER_WORKER)))
    finishers = WorkerGroup("finish", max(int(workers), 1), 1, {CPU_RESOURCE: 1})
    return PlateLayout("gpu", (*predictors, finishers), None, why)


def _cpu_layout(cores: int, memory_gb: float | None, workers: int | None, why: str) -> PlateLayout:
    if workers is None:
        workers = max(1, min(cores, int(memory_gb // GB_PER_WORKER) if memory_gb else cores))
    workers = max(int(workers), 1)
    group = WorkerGroup("fields", workers, 1)
    return PlateLayout("cpu", (group,), max(1, cores // workers), why)


def visible_gpus() -> tuple[str, ...]:
    """The CUDA GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them.

    Without NVIDIA device nodes, torch is not even imported. A ``CUDA_VISIBLE_DEVICES``
    already set (``2,3``, or GPU UUIDs) is kept: worker ``i`` gets its ``i``-th entry.
    """
    from ..runtime.base import no_cuda_gpu_here

    if no_cuda_gpu_here():
        return ()
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except (ImportError, OSError, RuntimeError):
        return ()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        names = [name.strip() for name in listed.split(",") if name.strip()]
        return tuple(names[:count])
    return tuple(str(index) for index in range(count))


def memory_gb() -> float | None:
    """This machine's memory in GB (None where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


def machine_layout(workers: int | None = None, device: str | None = None) -> PlateLayout:
    """:func:`choose_layout` for this machine."""
    from ..runtime.base import default_cpu_threads

    return choose_layout(
        gpus=visible_gpus(),
        cores=default_cpu_threads(),
        memory_gb=memory_gb(),
        workers=workers,
        device=device,
    )


def planned_layout(parameters: dict[str, Any]) -> dict[str, Any]:
    """The layout a run with these plan parameters uses, for ``run.json``: this machine's
    local cluster, or the scheduler it joined (whose workers are its own)."""
    scheduler = parameters.get("scheduler")
    if scheduler:
        return {
            "kind": "scheduler",
            "scheduler": scheduler,
            "summary": f"the cluster at {scheduler}: network tasks ask for "
            f"{GPU_RESOURCE}={PREDICT_GPU_SHARE:g} where workers advertise {GPU_RESOURCE}",
        }
    return machine_layout(parameters.get("workers"), parameters.get("device")).describe()
