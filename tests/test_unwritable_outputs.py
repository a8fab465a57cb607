"""An output folder that cannot be written is one sentence and exit 2, and nothing is touched.

Two real ways a folder refuses files: a read-only file system (a folder bind-mounted
read-only in a private mount namespace, ``unshare``), and a folder the kernel refuses to
create files in whoever asks (``/sys/fs``: permission denied, even to root).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from plate_helpers import make_plate

CLI = "from cellseg_hcs.cli import main; main()"
NO_PERMISSION = Path("/sys/fs")


def _can_mount_read_only() -> bool:
    import tempfile

    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder}"
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True)
    return probe.returncode == 0


READ_ONLY = pytest.param(
    "read-only",
    marks=pytest.mark.skipif(
        not _can_mount_read_only(), reason="unshare cannot make a read-only mount here"
    ),
)


def _cellseg(folder_kind: str, folder: Path, *args) -> subprocess.CompletedProcess:
    """The CLI with ``folder`` unwritable: mounted read-only, or replaced by /sys/fs."""
    command = [sys.executable, "-c", CLI, *map(str, args)]
    if folder_kind == "read-only":
        mount = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} {folder}"
        command = ["unshare", "-rm", "sh", "-c", f'{mount} && exec "$@"', "sh", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _one_sentence(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    for word in words:
        assert word in lines[0]


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("kind", [READ_ONLY, "no permission"])
def test_segment_into_an_unwritable_folder_is_one_sentence(tmp_path, mnfinder_dir, kind):
    image = sorted((mnfinder_dir / "images").glob("*.tif"))[0]
    out = tmp_path / "labels"
    out.mkdir()
    if kind == "no permission":
        out = NO_PERMISSION / "labels"
    done = _cellseg(kind, out, "segment", image, "--out", out, "--no-progress")
    _one_sentence(done, str(out))
    if kind == "read-only":
        assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", [READ_ONLY, "no permission"])
def test_run_into_an_unwritable_folder_touches_nothing_in_the_plate(tmp_path, kind):
    from plate_helpers import threshold_model

    make_plate(tmp_path / "plate.zarr", wells=("B02",), sites=1)
    model = threshold_model().save(tmp_path / "m.safetensors")
    out = tmp_path / "results"
    out.mkdir()
    if kind == "no permission":
        out = NO_PERMISSION / "results"
    before = _files(tmp_path / "plate.zarr")
    done = _cellseg(kind, out, "run", tmp_path / "plate.zarr", "--out", out, "--model", model)
    _one_sentence(done, "results")
    assert _files(tmp_path / "plate.zarr") == before


@pytest.mark.parametrize("kind", [READ_ONLY, "no permission"])
def test_convert_into_an_unwritable_folder_is_one_sentence(tmp_path, kind):
    export = tmp_path / "export"
    export.mkdir()
    tifffile.imwrite(export / "Plate1_B03_s1_w1.tif", np.ones((32, 32), np.uint16))
    parent = tmp_path / "plates"
    parent.mkdir()
    if kind == "no permission":
        parent = NO_PERMISSION
    done = _cellseg(kind, parent, "convert", export, "--out", parent / "plate.zarr")
    _one_sentence(done)
    if kind == "read-only":
        assert list(parent.iterdir()) == []
