"""A run directory is self-contained (issue 24 item 1): `cp -a runs/smoke elsewhere/` after a
kill and `resume elsewhere/smoke` finishes the copy and leaves the original byte for byte as it
was; a moved run directory (the original path gone) resumes to the end.

Ray's tuner.pkl and the searcher's saved state hold the absolute paths of the directory the
sweep started in (the status log, the W&B mirror, the Optuna journal): a resume must write
where it was asked to, whatever those say."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray  # noqa: F401 - also puts Ray's own psutil on the path

from sweep.__main__ import main
from sweep.rundir import (
    BEST_CHECKPOINT,
    FINISHED,
    METRIC,
    STUDY_FILE,
    journal_storage,
    read_statuses,
    read_trials,
    storage_of,
)
from sweep.runner import resume_experiment
from tests.helpers import TINY_DATA
from tests.test_sweep_resume import read_status

REPO = Path(__file__).resolve().parents[1]
# 6 trials, 1 at a time, on tiny data (what is checked is where a resume writes, not what trials
# learn; the run's saved config keeps the tiny data for its resumes).
RUN = [sys.executable, "-m", "sweep", "run", "experiments/smoke.yaml", *TINY_DATA]
TRIALS = 6


def kill_when_two_trials_ended(process: subprocess.Popen, run_dir: Path,
                               timeout_s: float = 300) -> None:
    """SIGKILL the driver and every process it started once two trials have ended: the sweep
    is left half done, as a user's `kill -9` leaves it, and nothing writes into it later."""
    import psutil

    deadline = time.monotonic() + timeout_s
    try:
        while sum(e["status"] in FINISHED for e in read_status(run_dir).values()) < 2:
            assert process.poll() is None and time.monotonic() < deadline, \
                f"the sweep never ended two trials (exit {process.poll()}): {read_status(run_dir)}"
            time.sleep(0.1)
    finally:
        family = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for child in family:
            try:
                child.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(family, timeout=30)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> tuple[Path, Path]:
    """A smoke sweep killed after two of its six trials (where it ran, and a pristine copy of
    it to put back there before each test: the embedded paths name the first)."""
    base = tmp_path_factory.mktemp("interrupted")
    runs = base / "runs"
    process = subprocess.Popen(RUN + ["--runs-dir", str(runs)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    kill_when_two_trials_ended(process, runs / "smoke")
    pristine = base / "pristine"
    shutil.copytree(runs / "smoke", pristine, symlinks=True)
    return runs / "smoke", pristine


@pytest.fixture
def original(interrupted) -> Path:
    run_dir, pristine = interrupted
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(pristine, run_dir, symlinks=True)
    return run_dir


def snapshot(run_dir: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under ``run_dir``, by relative path."""
    return {str(p.relative_to(run_dir)): None if p.is_dir() else p.read_bytes()
            for p in sorted(run_dir.rglob("*")) if p.is_dir() or p.is_file()}


def assert_finished_in(run_dir: Path) -> None:
    """Every trial ended, the study (in this directory's journal) holds all of them, and
    best.pth is this directory's best kept checkpoint. (A trial the killed driver started after
    Ray's last snapshot is lost: recorded failed, and Ray runs another in its place.)"""
    statuses = read_statuses(run_dir)
    assert all(e["status"] != "running" for e in statuses.values()), statuses
    assert sum(e["status"] != "failed" for e in statuses.values()) == TRIALS, statuses
    study = optuna.load_study(study_name="smoke", storage=journal_storage(run_dir))
    assert len(study.trials) >= TRIALS and all(t.state.is_finished() for t in study.trials)
    assert {t.user_attrs.get("ray_trial_id") for t in study.trials} >= \
        {t for t, e in statuses.items() if e["status"] != "failed"}
    best = max(((r, r.best_row()) for r in read_trials(storage_of(run_dir)) if r.best_row()),
               key=lambda pair: pair[1][METRIC])
    kept = run_dir.joinpath(*best[0].checkpoint_parts(best[1]))
    assert (run_dir / BEST_CHECKPOINT).read_bytes() == kept.read_bytes()


def test_a_copied_run_resumes_into_itself_and_leaves_the_original_untouched(
        ray_session, original, tmp_path):
    before = snapshot(original)
    assert {STUDY_FILE, "trial_status.json", "tune", "wandb"} <= set(before)
    copy = tmp_path / "elsewhere" / "smoke"
    shutil.copytree(original, copy, symlinks=True)  # cp -a

    summary = resume_experiment(copy)

    assert summary.counts["running"] == 0, summary.counts
    assert_finished_in(copy)
    after = snapshot(original)
    changed = sorted(p for p in set(before) | set(after) if before.get(p, b"") != after.get(p))
    assert not changed, f"resuming the copy changed the original: {changed[:10]}"


def test_a_moved_run_resumes_to_the_end(ray_session, original, tmp_path):
    moved = tmp_path / "moved" / "smoke"
    moved.parent.mkdir()
    original.rename(moved)  # mv: the path in Ray's and Optuna's saved state is gone

    assert main(["resume", str(moved)]) == 0

    assert_finished_in(moved)
    assert not original.exists()  # nothing made again at the old place
