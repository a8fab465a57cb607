"""The layout of a plate run (issue #20, findings 7 and 13): one predictor per GPU beside CPU
workers that post-process and measure, chosen from the machine, used by the local cluster,
printed by ``cellseg-hcs info`` and recorded in ``run.json``."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from plate_helpers import make_plate, threshold_model

from cellseg_hcs.cli import main
from cellseg_hcs.plate import cluster, layout
from cellseg_hcs.plate.layout import choose_layout

# ---------------------------------------------------------------- choose_layout


def test_a_cpu_machine_runs_one_single_threaded_worker_per_core_capped_by_memory():
    plenty = choose_layout(gpus=(), cores=8, memory_gb=64)
    assert plenty.kind == "cpu" and [(g.processes, g.threads) for g in plenty.groups] == [(8, 1)]
    assert plenty.inference_threads == 1 and not plenty.groups[0].resources
    scarce = choose_layout(gpus=(), cores=8, memory_gb=6)
    assert scarce.groups[0].processes == 3 and scarce.inference_threads == 2


def test_a_gpu_machine_runs_one_predictor_per_gpu_beside_single_threaded_cpu_workers():
    chosen = choose_layout(gpus=("0", "1"), cores=16, memory_gb=128)
    predictors, finishers = chosen.groups[:2], chosen.groups[2]
    assert chosen.kind == "gpu" and len(chosen.groups) == 3
    for gpu, group in zip(("0", "1"), predictors):
        assert (group.role, group.processes, group.threads) == ("predict", 1, 4)
        assert group.resources == {"GPU": 1} and group.env == {"CUDA_VISIBLE_DEVICES": gpu}
    assert (finishers.role, finishers.processes, finishers.threads) == ("finish", 14, 1)
    assert finishers.resources == {"CPU": 1} and not finishers.env
    # Four fields at a time share one GPU's batches.
    assert layout.PREDICT_GPU_SHARE * predictors[0].threads == predictors[0].resources["GPU"]


def test_the_cpu_workers_beside_a_gpu_leave_memory_for_the_predictor():
    chosen = choose_layout(gpus=("0",), cores=32, memory_gb=24)
    assert chosen.groups[1].processes == (24 - 4) // 2


def test_device_cpu_keeps_the_cpu_layout_on_a_gpu_machine():
    chosen = choose_layout(gpus=("0",), cores=4, memory_gb=32, device="cpu")
    assert chosen.kind == "cpu" and "device cpu" in chosen.reason


def test_device_cuda_n_gives_one_predictor_that_sees_every_gpu():
    chosen = choose_layout(gpus=("0", "1", "2"), cores=8, memory_gb=64, device="cuda:2")
    predictors = [g for g in chosen.groups if g.role == "predict"]
    assert len(predictors) == 1 and predictors[0].gpu == "2" and not predictors[0].env


def test_workers_asked_for_are_the_cpu_workers_beside_the_predictors():
    chosen = choose_layout(gpus=("0",), cores=16, memory_gb=128, workers=3)
    assert [(g.role, g.processes) for g in chosen.groups] == [("predict", 1), ("finish", 3)]


def test_visible_gpus_keeps_the_cuda_visible_devices_already_set(monkeypatch):
    import torch

    from cellseg_hcs.runtime import base

    monkeypatch.setattr(base, "no_cuda_gpu_here", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert layout.visible_gpus() == ("5", "7")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert layout.visible_gpus() == ("0", "1")


def test_no_gpu_device_nodes_means_no_gpus_without_asking_torch(monkeypatch):
    from cellseg_hcs.runtime import base

    monkeypatch.setattr(base, "no_cuda_gpu_here", lambda: True)
    assert layout.visible_gpus() == ()


def test_the_layout_is_described_for_run_json_and_summarized_in_one_line():
    chosen = choose_layout(gpus=("0",), cores=4, memory_gb=64)
    described = json.loads(json.dumps(chosen.describe()))
    assert described["kind"] == "gpu" and len(described["workers"]) == 2
    assert described["workers"][0]["resources"] == {"GPU": 1}
    assert "\n" not in chosen.summary() and "1 predictor process x 4 threads" in chosen.summary()


def test_info_names_the_plate_layout_it_would_use(monkeypatch):
    monkeypatch.setattr(layout, "visible_gpus", lambda: ("0",))
    output = CliRunner().invoke(main, ["info"]).output
    assert "plate layout: gpu: 1 predictor process x 4 threads (GPU 0" in output


# ---------------------------------------------------------------- the cluster (finding 13)


class _ClientWithManyWorkers:
    """A client of a cluster of 12 workers whose ``scheduler_info()`` lists only the first
    five unless asked for all (``n_workers=-1``), as recent ``distributed`` releases do."""

    def __init__(self, gpu_worker: int = 9):
        self.workers = {
            f"tcp://w{i}": {
                "nthreads": 4 if i == gpu_worker else 1,
                "resources": {"GPU": 1} if i == gpu_worker else {"CPU": 1},
            }
            for i in range(12)
        }

    def scheduler_info(self, n_workers: int = 5):
        listed = list(self.workers.items())
        return {"workers": dict(listed if n_workers == -1 else listed[:n_workers])}

    def nthreads(self):
        return {address: info["nthreads"] for address, info in self.workers.items()}


def test_the_in_flight_window_counts_every_worker_not_only_the_first_few_listed():
    assert cluster._in_flight_limit(_ClientWithManyWorkers()) == 2 * (11 + 4) + 2


def test_a_gpu_worker_past_the_first_few_listed_still_gets_the_network_tasks():
    assert cluster._gpu_resource(_ClientWithManyWorkers(gpu_worker=9)) == {"GPU": 0.25}
    assert cluster._cpu_resource(_ClientWithManyWorkers()) == {"CPU": 1}


def test_a_client_without_the_n_workers_argument_is_asked_plainly():
    class Older(_ClientWithManyWorkers):
        def scheduler_info(self):  # every worker, as releases before the argument did
            return {"workers": dict(self.workers)}

    assert cluster._gpu_resource(Older()) == {"GPU": 0.25}


@pytest.mark.timeout(240)
def test_a_plate_in_the_gpu_layout_predicts_on_the_gpu_worker_and_measures_on_cpu_workers(
    tmp_path,
):
    """The layout's cluster, with a pretend GPU worker (its network runs on the CPU here)."""
    from distributed import Client, get_task_stream

    from cellseg_hcs.plate.run import run_plate

    truth = make_plate(tmp_path / "plate.zarr", wells=("B02", "B03"), sites=2)
    gpu_layout = choose_layout(gpus=("0",), cores=3, memory_gb=None)
    with (
        cluster.local_cluster(gpu_layout, processes=False) as local,
        Client(local) as client,
        get_task_stream(client) as stream,
    ):
        result = run_plate(
            tmp_path / "plate.zarr",
            tmp_path / "out",
            model=threshold_model(),
            features="minimal",
            scheduler=client,
            progress=False,
        )
        names = {
            address: info["name"] for address, info in client.scheduler_info()["workers"].items()
        }
    counts = result.images.set_index(["Metadata_Well", "Metadata_Site"])["Count_Nuclei"]
    assert counts.to_dict() == truth
    ran = {}
    for task in stream.data:
        kind = str(task["key"]).split("-", 1)[0]
        ran.setdefault(kind, set()).add(names[task["worker"]].split("-", 1)[0])
    assert ran == {"predict": {"predict"}, "finish": {"finish"}}
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["layout"]["kind"] == "scheduler"


def test_run_json_of_a_local_run_records_the_machines_layout():
    parameters = {"scheduler": None, "workers": 2, "device": "cpu"}
    described = layout.planned_layout(parameters)
    assert described["kind"] == "cpu" and described["workers"][0]["processes"] == 2


@pytest.mark.timeout(120)
def test_worker_processes_keep_glibcs_adaptive_malloc_for_numpy_temporaries(monkeypatch):
    """dask's default MALLOC_TRIM_THRESHOLD_ made measuring a field 2.1x slower in workers."""
    from distributed import Client

    # A shell without it (an earlier dask cluster in this process may have copied it here).
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)

    layout = choose_layout(gpus=(), cores=1, memory_gb=None, workers=1)
    with cluster.local_cluster(layout) as local, Client(local) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(seen.values()) == [None]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["environment", "dask config"])
def test_a_trim_threshold_the_user_chose_is_kept(where, monkeypatch):
    import dask
    from distributed import Client

    # The nanny copies its pre-spawn variables into this process's environment too: the
    # monkeypatch puts the environment back as it was afterwards.
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(1 << 20))
    if where == "dask config":
        monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    chosen = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 1 << 20}
    layout = choose_layout(gpus=(), cores=1, memory_gb=None, workers=1)
    with (
        dask.config.set(chosen if where == "dask config" else {}),
        cluster.local_cluster(layout) as local,
        Client(local) as client,
    ):
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(seen.values()) == [str(1 << 20)]


@pytest.mark.parametrize("threads, measured_in", [(3, 3), (None, 1)])
def test_a_worker_measures_its_fields_with_the_cores_its_network_has(
    tmp_path, threads, measured_in
):
    """A CPU worker's share of the machine (``cores / workers``) runs its network and then
    its measurement; a GPU network's job has no CPU threads and measures in one."""
    from cellseg_hcs.io.plate import PlateField
    from cellseg_hcs.plate import tasks
    from cellseg_hcs.settings import FieldSettings

    model = threshold_model()
    path = model.save(tmp_path / "threshold.safetensors")
    job = tasks.FieldJob(
        plate_path=str(tmp_path / "plate.zarr"),
        field=PlateField("plate", "A01", 0, "A/1/0"),
        out=str(tmp_path / "out"),
        settings=FieldSettings(model=str(path), diameter=None),
        object_name="Nuclei",
        features=("location",),
        model_path=str(path),
        model_hash=model.hash,
        channel_names=("DNA",),
        threads=threads,
    )
    assert tasks.field_pipeline(job).measure_threads == measured_in
