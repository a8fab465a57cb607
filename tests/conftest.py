"""Shared fixtures: paths to the committed data, the shared data, and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).parent
DATA = TESTS / "data"
MNFINDER = DATA / "mnfinder"
SHARED_MNFINDER = TESTS.parent.parent / "shared" / "data" / "mnfinder"

# The CellProfiler 4.2.8 environment (scripts/setup_cellprofiler_env.sh; .ci/run builds it).
CP_VENV = Path(os.environ.get("CELLSEG_HCS_CP_VENV", TESTS.parent / ".venv-cp"))
CP_PYTHON = CP_VENV / "bin" / "python"
needs_cellprofiler = [
    pytest.mark.cellprofiler,
    pytest.mark.skipif(
        not CP_PYTHON.exists(),
        reason=f"no CellProfiler environment at {CP_VENV}; build it with "
        "scripts/setup_cellprofiler_env.sh",
    ),
]


@pytest.fixture
def mnfinder_dir() -> Path:
    """The few mnfinder test-split images (and labels) committed in tests/data."""
    return MNFINDER


@pytest.fixture(scope="session")
def shared_mnfinder() -> Path:
    """The full mnfinder data set beside the repository (CI has it; a user's clone may not)."""
    if not (SHARED_MNFINDER / "images").is_dir():
        pytest.skip(f"the shared mnfinder data is not at {SHARED_MNFINDER} (not in a fresh clone)")
    return SHARED_MNFINDER


@pytest.fixture
def tiny_model():
    """A tiny randomly initialised model: for plumbing, not accuracy."""
    import torch

    from cellseg_hcs.model.model import Model, ModelInfo
    from cellseg_hcs.model.unet import UNet

    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "norm": "batch"}
    return Model(UNet(**options), ModelInfo(network=options))


@pytest.fixture(scope="module")
def random_stem2_model():
    """A small random UNet with the real model's space-to-depth stem: it sees orientation
    and scale as no trained model should (plumbing, not accuracy)."""
    import torch

    from cellseg_hcs.model.model import Model, ModelInfo
    from cellseg_hcs.model.unet import UNet

    torch.manual_seed(0)
    options = {"in_channels": 1, "out_channels": 2, "depth": 3, "width": 4, "stem": 2}
    return Model(UNet(**options), ModelInfo(network=options))


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) imported as a module, to test its functions."""
    import importlib.util

    path = TESTS.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def disk(shape, center, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


@pytest.fixture(autouse=True, scope="session")
def _private_backend_cache(tmp_path_factory):
    """Tests measure backends and export models into their own cache, never the user's."""
    import os

    previous = os.environ.get("CELLSEG_HCS_CACHE")
    os.environ["CELLSEG_HCS_CACHE"] = str(tmp_path_factory.mktemp("cellseg-hcs-cache"))
    yield
    if previous is None:
        os.environ.pop("CELLSEG_HCS_CACHE", None)
    else:
        os.environ["CELLSEG_HCS_CACHE"] = previous


@pytest.fixture
def one_cpu_thread(monkeypatch):
    """Backends on one thread: much faster so on a busy 2-core machine; restored after."""
    import torch

    monkeypatch.setenv("CELLSEG_HCS_THREADS", "1")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a whole module: many small networks run much faster so on a
    busy 2-core machine; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
