"""`--scheduler`: the run on a real dask scheduler and two workers on 127.0.0.1.

Each worker is its own process (with its nanny) in its own session, so "killing a worker"
takes the whole worker down as a crashed node would, and cleaning up never misses one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from plate_helpers import make_plate, threshold_model

from cellseg_hcs.io.tables import read_features
from cellseg_hcs.plate.cluster import _gpu_resource
from cellseg_hcs.plate.run import run_plate
from cellseg_hcs.plate.tasks import loaded_model_count

DASK = [sys.executable, "-m", "dask"]


def _start(stack: ExitStack, args: list[str], log: Path) -> subprocess.Popen:
    handle = stack.enter_context(open(log, "w"))
    process = subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )

    def stop():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    stack.callback(stop)
    return process


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_run_on_a_scheduler_with_two_workers_survives_one_worker_killed(tmp_path):
    from distributed import Client

    truth = make_plate(
        tmp_path / "plate.zarr", wells=("B02", "B03", "C02", "C03"), sites=3, shape=(160, 160)
    )
    model = threshold_model()
    model_file = model.save(tmp_path / "threshold.safetensors")
    scheduler_file = tmp_path / "scheduler.json"
    with ExitStack() as stack:
        _start(
            stack,
            [
                *DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            tmp_path / "scheduler.log",
        )
        _wait_for(scheduler_file.exists, 60, "the scheduler file")
        address = json.loads(scheduler_file.read_text())["address"]
        workers = [
            _start(
                stack,
                [
                    *DASK,
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                ],
                tmp_path / f"worker{i}.log",
            )
            for i in range(2)
        ]
        with Client(address, timeout="30s") as probe:
            probe.wait_for_workers(2, timeout=90)

        failure: list[BaseException] = []
        result: list = []

        def run():
            try:
                result.append(
                    run_plate(
                        tmp_path / "plate.zarr",
                        tmp_path / "out",
                        model=model_file,
                        features="default",
                        scheduler=address,
                        progress=False,
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                failure.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        _wait_for(
            lambda: (
                len(list((tmp_path / "out" / "status").glob("*.json"))) >= 1
                or not runner.is_alive()
            ),
            150,
            "the first finished field",
        )
        done_at_kill = len(list((tmp_path / "out" / "status").glob("*.json")))
        os.killpg(workers[0].pid, signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive(), "the run did not finish after a worker was killed"
        if failure:
            raise failure[0]
        with Client(address, timeout="30s") as probe:
            models_loaded = probe.run(loaded_model_count)

    assert done_at_kill < len(truth), "the run ended before a worker could be killed"
    on_cluster = result[0]
    assert (on_cluster.images["status"] == "ok").all(), on_cluster.images["error"].tolist()

    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        local = run_plate(
            tmp_path / "plate.zarr",
            tmp_path / "local",
            model=model_file,
            features="default",
            scheduler=client,
            progress=False,
        )
    keep = [c for c in local.images.columns if not c.startswith("Seconds_")]
    pd.testing.assert_frame_equal(on_cluster.images[keep], local.images[keep])
    pd.testing.assert_frame_equal(
        read_features(tmp_path / "out"), read_features(tmp_path / "local")
    )
    assert (
        on_cluster.images.set_index(["Metadata_Well", "Metadata_Site"])["Count_Nuclei"].to_dict()
        == truth
    )
    # The surviving worker ran most fields, and loaded the model once for all of them.
    assert list(models_loaded.values()) == [1]


def test_network_tasks_ask_for_a_gpu_only_where_workers_advertise_one(tmp_path):
    from distributed import Client, LocalCluster

    truth = make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=2)
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address=None,
            resources={"GPU": 1},
        ) as cluster,
        Client(cluster) as client,
    ):
        assert _gpu_resource(client) == {"GPU": 0.25}  # four fields share its batches
        result = run_plate(
            tmp_path / "plate.zarr",
            tmp_path / "out",
            model=threshold_model(),
            features="minimal",
            scheduler=client,
            progress=False,
        )
    assert result.images["Count_Nuclei"].tolist() == [truth[("B02", 0)], truth[("B02", 1)]]
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        assert _gpu_resource(client) is None
