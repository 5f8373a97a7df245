"""Resume after the driver dies: SIGKILL `python -m sweep run` in the middle of a sweep, then
`resume` it. No finished trial runs again; a trial that was mid-way continues from its last
checkpoint; the sweep (and its Optuna study) ends with every trial accounted for."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from sweep.rundir import journal_storage, read_trials, storage_of
from sweep.runner import resume_experiment
from tests.helpers import TINY_DATA

REPO = Path(__file__).resolve().parents[1]
# Longer trials than smoke (5 epochs, stopped no earlier than 2) so one is caught mid-way; tiny
# data, as what is checked is which epochs run again, not what they learn.
RUN = [sys.executable, "-m", "sweep", "run", "experiments/smoke.yaml", "--search.trials=6",
       "--search.concurrency=2", "--scheduler.max_epochs=5", "--scheduler.grace_period=2",
       *TINY_DATA]


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "trial_status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait_for_mid_sweep(run_dir: Path, process: subprocess.Popen, timeout_s: float = 120) -> dict:
    """Statuses once a trial has finished and another is at least 2 epochs in."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        status = read_status(run_dir)
        finished = [e for e in status.values() if e["status"] != "running"]
        midway = [e for e in status.values() if e["status"] == "running" and e["epochs"] >= 2]
        if finished and midway:
            return status
        time.sleep(0.1)
    raise AssertionError(f"never saw a finished and a mid-way trial (exit {process.poll()}): "
                         f"{read_status(run_dir)}")


def kill_driver(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Ray's processes die with their driver; whatever is slow to go is ours to end.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_resume_after_sigkill_reruns_nothing_finished(ray_session, tmp_path):
    run_dir = tmp_path / "smoke"
    process = subprocess.Popen(RUN + ["--runs-dir", str(tmp_path)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        before = wait_for_mid_sweep(run_dir, process)
    finally:
        kill_driver(process)
    rows_before = {r.trial_id: r.rows for r in read_trials(storage_of(run_dir))}
    finished = {t for t, e in before.items() if e["status"] != "running"}
    midway = {t for t, e in before.items() if e["status"] == "running" and e["epochs"] >= 2}

    summary = resume_experiment(run_dir)

    after = read_status(run_dir)
    assert summary.counts["running"] == 0 and summary.best_val_dice > 0
    assert {e["status"] for e in after.values()} <= {"complete", "pruned", "failed"}
    assert sum(e["status"] in ("complete", "pruned") for e in after.values()) >= 6
    records = {r.trial_id: r for r in read_trials(storage_of(run_dir))}
    for trial_id in finished:  # not one more epoch for a finished trial
        assert records[trial_id].rows == rows_before[trial_id]
        assert after[trial_id]["status"] == before[trial_id]["status"]
    for trial_id in midway:  # continued from its checkpoint, not from epoch 1
        epochs = [row["epoch"] for row in records[trial_id].rows]
        assert epochs.count(1) == 1 and max(epochs) == after[trial_id]["epochs"], epochs
    study = optuna.load_study(study_name="smoke", storage=journal_storage(run_dir))
    assert all(t.state.is_finished() for t in study.trials)
    told = {t.user_attrs.get("ray_trial_id") for t in study.trials}
    assert {t for t, e in after.items() if e["status"] != "failed"} <= told


def test_resume_falls_back_to_the_newest_checkpoint_when_rays_is_gone(tmp_path):
    """Ray deletes a worse checkpoint as soon as a newer one registers; a driver killed before
    its next snapshot leaves the resumed trial pointing at the deleted one."""
    from sweep.rundir import CHECKPOINT_FILE
    from sweep.trainable import resume_file

    for index in (1, 3):
        folder = tmp_path / f"checkpoint_{index:06d}"
        folder.mkdir()
        (folder / CHECKPOINT_FILE).write_bytes(b"x")
    assert resume_file(tmp_path / "checkpoint_000001") == tmp_path / "checkpoint_000001" / \
        CHECKPOINT_FILE
    assert resume_file(tmp_path / "checkpoint_000002") == tmp_path / "checkpoint_000003" / \
        CHECKPOINT_FILE
