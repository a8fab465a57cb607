"""Run a plate on every GPU of one machine: dask-cuda's LocalCUDACluster, one worker per GPU.

    pip install dask-cuda
    python examples/run_plate_local_cuda.py plate.zarr results/

Each worker is pinned to one GPU (CUDA_VISIBLE_DEVICES), advertises it as a ``GPU``
resource, and loads the model once; its other threads label and measure fields while the
GPU predicts the next ones. Not run in this repository's tests (no GPU or dask-cuda here).
"""

from __future__ import annotations

import os
import sys

from dask.distributed import Client
from dask_cuda import LocalCUDACluster

from cellseg_hcs.plate.run import run_plate


def main(plate: str, out: str) -> None:
    threads = max(2, (os.cpu_count() or 2) // max(1, _gpu_count()))
    with (
        LocalCUDACluster(threads_per_worker=threads, resources={"GPU": 1}) as cluster,
        Client(cluster) as client,
    ):
        result = run_plate(plate, out, scheduler=client, channel="DNA", device="cuda")
    print(
        f"{len(result.images)} fields, {result.failed} failed, {result.objects} nuclei "
        f"-> {result.out}"
    )


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


if __name__ == "__main__":
    main(*sys.argv[1:3])
