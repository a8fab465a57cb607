"""Run a plate on a SLURM cluster: dask-jobqueue workers, the GPU nodes asked for a GPU.

    pip install "cellseg-hcs[cluster]"
    python examples/run_plate_slurm.py /shared/plates/P001.zarr /shared/results/P001

Edit the queue, account and sizes for your site. The plate and the output folder must be on
storage every node sees: workers read the fields and write labels and tables there
themselves. Not run in this repository's tests (there is no SLURM here); the same
``run_plate(..., scheduler=client)`` path is tested against a real local scheduler and
workers in tests/test_cluster_scheduler.py.
"""

from __future__ import annotations

import sys

from dask.distributed import Client
from dask_jobqueue import SLURMCluster

from cellseg_hcs.plate.run import run_plate


def main(plate: str, out: str) -> None:
    cluster = SLURMCluster(
        queue="gpu",  # your GPU partition
        account="my-lab",  # your accounting project
        cores=8,  # threads per job: one feeds the GPU, the rest measure
        processes=1,  # one process per GPU: the model is loaded once in it
        memory="32GB",
        walltime="04:00:00",
        job_extra_directives=["--gres=gpu:1"],
        # Advertise the GPU: the network tasks ask for it, measuring runs beside them.
        worker_extra_args=["--resources", "GPU=1"],
        local_directory="$TMPDIR",
    )
    cluster.adapt(minimum_jobs=1, maximum_jobs=8)  # scale with the queue of fields
    with Client(cluster) as client:
        result = run_plate(plate, out, scheduler=client, channel="DNA", features="default")
    print(
        f"{len(result.images)} fields, {result.failed} failed, {result.objects} nuclei "
        f"-> {result.out}"
    )
    cluster.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
