"""Hermetic tests: HOME, TMPDIR, Ray's and W&B's folders point into one temporary folder that
is removed at the end; W&B is offline; one Ray session (if any test needs Ray) is shared."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Before anything imports ray, wandb or matplotlib. The path is short on purpose: Ray's unix
# socket paths live under it and must stay under 107 characters.
_ROOT = tempfile.mkdtemp(prefix="cs-", dir="/tmp")
for name, sub in [("HOME", "home"), ("TMPDIR", "tmp"), ("RAY_TMPDIR", "ray"),
                  ("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "wandb-cache"),
                  ("WANDB_CONFIG_DIR", "wandb-config"), ("MPLCONFIGDIR", "mpl")]:
    os.environ[name] = os.path.join(_ROOT, sub)
    os.makedirs(os.environ[name], exist_ok=True)
os.environ["WANDB_MODE"] = "offline"
os.environ.pop("WANDB_API_KEY", None)
os.environ["MPLBACKEND"] = "Agg"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
tempfile.tempdir = None  # re-read TMPDIR


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def hermetic_root() -> str:
    return _ROOT


@pytest.fixture
def gpu():
    """A CUDA device, or a clean skip where there is none."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch.device("cuda")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that needs it (ray.init costs ~5 s here)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        # address="local": never join a cluster a developer left running (or its stale file).
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _temp_dir=os.environ["RAY_TMPDIR"], log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_run(ray_session, tmp_path_factory):
    """experiments/smoke.yaml swept once (6 tiny trials, one at a time, ~15 s): the run
    directory (docs/RUN_LAYOUT.md). Shared by every test: read it, or copy it to change it.

    Once per test run, not once per pytest-xdist worker: the first worker that needs it sweeps
    it under a file lock in the base folder every worker shares; the others wait and read it."""
    import json
    from pathlib import Path

    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the controller's base folder, above each worker's
    done = shared / "smoke-run.json"
    with FileLock(str(shared / "smoke-run.lock")):
        if not done.exists():
            from sweep.experiment import load_experiment
            from sweep.runner import run_experiment

            experiment = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"
            summary = run_experiment(load_experiment(experiment), shared / "smoke-runs")
            done.write_text(json.dumps({"run_dir": str(summary.run_dir)}))
    return Path(json.loads(done.read_text())["run_dir"])


@pytest.fixture
def run_copy(smoke_run, tmp_path):
    """A copy of the shared smoke run, for a test that changes or damages it."""
    copy = tmp_path / "smoke"
    shutil.copytree(smoke_run, copy)
    return copy
