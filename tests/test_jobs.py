"""Jobs: `ray job submit` to the head of `make dashboard` (token auth on) runs a sweep there, the
way a sweep is sent to a remote cluster; without the token the head refuses the job API."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweep import dashboard
from sweep.rundir import read_statuses
from tests.helpers import TINY_DATA
from tests.test_dashboard import free_port

REPO = Path(__file__).resolve().parents[1]


def submit_command(url: str, runs_dir: Path, *overrides: str) -> list[str]:
    """As `make submit` runs it: the repository as the job's working dir, this venv's python."""
    return [dashboard.ray_executable(), "job", "submit", "--address", url, "--working-dir", ".",
            "--", sys.executable, "-m", "sweep", "run", "experiments/smoke.yaml",
            "--runs-dir", str(runs_dir), *overrides]


def test_ray_job_submit_runs_a_sweep_on_the_dashboard_head(tmp_path):
    head = dashboard.start_head(free_port(), free_port(), extra_args=(
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=2"))
    try:
        url = head["dashboard_url"]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        refused = subprocess.run([dashboard.ray_executable(), "job", "list", "--address", url],
                                 env={k: v for k, v in env.items() if k != "RAY_AUTH_MODE"},
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0, refused.stdout[-2000:]
        try:
            job = subprocess.run(
                submit_command(url, tmp_path, "--search.trials=2", "--scheduler.max_epochs=2",
                               *TINY_DATA),
                cwd=REPO, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
                timeout=600)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"the job hung: {str(error.stdout)[-3000:]}")
        assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
        assert "succeeded" in job.stdout and "sweep smoke: 2 trials" in job.stdout
    finally:
        dashboard.stop_head()
    statuses = read_statuses(tmp_path / "smoke")
    assert len(statuses) == 2 and {e["status"] for e in statuses.values()} <= {"complete",
                                                                               "pruned"}
    assert (tmp_path / "smoke" / "best.pth").exists()
