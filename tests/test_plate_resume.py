"""A plate run killed with SIGKILL and started again loses no field and duplicates no object."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from plate_helpers import make_plate, threshold_model

from cellseg_hcs.io.tables import read_features
from cellseg_hcs.plate.run import run_plate

WELLS = ("B02", "B03", "C02", "C03")
SITES = 2


def _command(plate, out, model_file) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from cellseg_hcs.cli import main; main()",
        "run",
        str(plate),
        "--out",
        str(out),
        "--model",
        str(model_file),
        "--features",
        "default",
        "--workers",
        "1",
        "--no-progress",
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killed_run_resumes_without_losing_fields_or_duplicating_objects(tmp_path):
    from distributed import Client

    truth = make_plate(tmp_path / "plate.zarr", wells=WELLS, sites=SITES, shape=(128, 128))
    shutil.copytree(tmp_path / "plate.zarr", tmp_path / "reference.zarr")
    model = threshold_model()
    model_file = model.save(tmp_path / "threshold.safetensors")
    out = tmp_path / "out"

    # The whole process group goes, cluster workers included, as when a node dies.
    process = subprocess.Popen(
        _command(tmp_path / "plate.zarr", out, model_file),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((out / "status").glob("*.json"))) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    done_when_killed = len(list((out / "status").glob("*.json")))
    assert 2 <= done_when_killed < len(truth)
    assert not (out / "images.parquet").exists()

    # The same run again (in this process, to save a cluster start-up), then a reference
    # run, uninterrupted, on an untouched copy of the plate.
    with Client(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
    ) as client:
        rerun = run_plate(
            tmp_path / "plate.zarr",
            out,
            model=model_file,
            features="default",
            scheduler=client,
            progress=False,
        )
        reference = run_plate(
            tmp_path / "reference.zarr",
            tmp_path / "reference",
            model=model,
            features="default",
            scheduler=client,
            progress=False,
        )
    assert rerun.skipped == done_when_killed
    assert rerun.computed == len(truth) - done_when_killed

    import pandas as pd

    images = pd.read_parquet(out / "images.parquet")
    counts = images.set_index(["Metadata_Well", "Metadata_Site"])["Count_Nuclei"].to_dict()
    assert counts == truth
    assert (
        counts
        == reference.images.set_index(["Metadata_Well", "Metadata_Site"])["Count_Nuclei"].to_dict()
    )
    features = read_features(out)
    assert not features.duplicated(["Metadata_Well", "Metadata_Site", "ObjectNumber"]).any()
    assert len(features) == sum(truth.values())
    pd.testing.assert_frame_equal(features, read_features(tmp_path / "reference"))
