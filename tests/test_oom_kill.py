"""Issue 24 item 7: a trial's worker killed for memory (a container's memory limit: the kernel's
OOM killer sends SIGKILL; or Ray's memory monitor) is infeasible like a torch out-of-memory
error: not retried, one line. Ray's own texts are classified here (captured from Ray 2.60.0 on
this machine, or assembled from its raylet's format strings where a real kill needs a memory
limit), and a tiny sweep whose trial SIGKILLs itself (CRACK_SWEEP_FAULTS kill_when) runs it
end to end."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from sweep import failures
from sweep.experiment import load_experiment
from sweep.faults import ENV_VAR as FAULTS_ENV
from sweep.faults import Faults, faults_from_env
from sweep.outcome import TrialOutcomes, verdict
from sweep.rundir import INFEASIBLE, TUNE_DIR, TrialStorage, infeasible_reason, journal_storage
from tests.helpers import TINY_DATA

SMOKE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"

# error.txt of a Tune trial whose worker got SIGKILL (os.kill(os.getpid(), 9)), Ray 2.60.0.
SIGKILLED = """Failure # 1 (occurred at 2026-12-03_15-34-30)
The actor died unexpectedly before finishing this task.
\tclass_name: ImplicitFunc
\tactor_id: 3fcd4a8c53d5d08ff2d5df9801000000
\tpid: 8781
\tnamespace: 1d9cc186-1907-4f74-914e-55ecaba8715c
\tip: 192.0.2.2
The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker \
exit detail: Worker unexpectedly exits with a connection error code 2. End of file. Some common \
causes include: (1) the process was killed by the OOM killer due to high memory usage, (2) ray \
stop --force was called, or (3) the worker crashed unexpectedly due to SIGSEGV or another \
unexpected error. If the process was killed by the kernel OOM killer (verifiable by checking for \
OOM in dmesg of the OOMing node), consider enabling resource isolation via \
--enable-resource-isolation to prevent node deaths by resource contention and significant loss \
of progress by uninformed kernel OOM killing.
"""
# Ray's memory monitor killing an actor's worker: exit type NODE_OUT_OF_MEMORY and the raylet's
# "Memory on the node (IP: %s, ID: %s) was %sGB used / %sGB limit (%f)".
MONITOR_KILLED = """Failure # 1 (occurred at 2026-12-03_16-00-00)
The actor died unexpectedly before finishing this task.
\tclass_name: ImplicitFunc
The actor is dead because its worker process has died. Worker exit type: NODE_OUT_OF_MEMORY \
Worker exit detail: Task was killed due to the node running low on memory.
Memory on the node (IP: 10.0.0.5, ID: 4565301f07) was 7.52GB used / 7.70GB limit (0.976626), \
which exceeds the memory usage threshold 0.95.
"""
# The same from a Ray task rather than an actor: ray.exceptions.OutOfMemoryError.
TASK_MONITOR_KILLED = ("ray.exceptions.OutOfMemoryError: Task was killed due to the node "
                       "running low on memory.\nMemory on the node (IP: 10.0.0.5, ID: ab) was "
                       "15.1GB used / 15.5GB limit (0.97)")
PYTHON_ERROR = ("Failure # 1 (occurred at 2026-12-03_15-34-30)\nray.exceptions.RayTaskError"
                "(ValueError): ray::ImplicitFunc.train()\nTraceback (most recent call last):\n"
                "  File \"x.py\", line 3, in f\nValueError: bad learning rate\n")
NODE_DIED = ("Failure # 1 (occurred at 2026-12-03_15-34-30)\nThe actor died unexpectedly "
             "before finishing this task.\n\tthe actor's node was terminated unexpectedly: "
             "received SIGTERM\n")


@pytest.mark.parametrize("text, words", [
    (SIGKILLED, "killed without a Python error (SIGKILL"),
    (MONITOR_KILLED, "memory monitor killed its worker (7.52GB used of 7.70GB)"),
    (TASK_MONITOR_KILLED, "memory monitor killed its worker (15.1GB used of 15.5GB)"),
])
def test_rays_memory_kill_texts_are_one_out_of_memory_line(text, words):
    reason = failures.memory_kill_reason(text)
    assert reason is not None and words in reason and "\n" not in reason
    assert reason.startswith("out of memory") and failures.is_out_of_memory(reason)
    assert failures.failure_reason(text) == reason


@pytest.mark.parametrize("text", [PYTHON_ERROR, NODE_DIED, "", "RuntimeError: CUDA error"])
def test_other_failures_are_not_memory_kills(text):
    assert failures.memory_kill_reason(text) is None
    assert failures.failure_reason(text) == failures.error_reason(text)


def test_only_the_last_failure_of_a_retried_trial_counts():
    later = PYTHON_ERROR.replace("Failure # 1", "Failure # 2")
    assert failures.memory_kill_reason(SIGKILLED + later) is None
    assert failures.memory_kill_reason(later + SIGKILLED.replace("# 1", "# 2")) is not None


def trial_with_error(tmp_path: Path, text: str, trial_id: str = "t1"):
    error_file = tmp_path / f"{trial_id}-error.txt"
    error_file.write_text(text)
    return SimpleNamespace(trial_id=trial_id, error_file=str(error_file), last_result={},
                           get_error=lambda: "")


def test_a_killed_trial_is_infeasible_and_its_retry_ends_at_once(tmp_path):
    storage = TrialStorage(tmp_path)
    outcomes = TrialOutcomes(storage, max_epochs=3)
    killed = trial_with_error(tmp_path, SIGKILLED)
    reason = outcomes.retry(killed)
    assert reason and "SIGKILL" in reason
    assert infeasible_reason(storage, "t1") == reason  # the trainable's retry returns at once
    assert outcomes.of_trial(killed, errored=False) == (INFEASIBLE, reason)

    crashed = trial_with_error(tmp_path, PYTHON_ERROR, "t2")
    outcomes.decided["t2"] = ("failed", "old")
    assert outcomes.retry(crashed) is None and "t2" not in outcomes.decided  # a real retry
    assert infeasible_reason(storage, "t2") is None


def test_an_errored_killed_trial_without_retries_is_infeasible(tmp_path):
    outcomes = TrialOutcomes(TrialStorage(tmp_path), max_epochs=3)
    status, reason = outcomes.of_trial(trial_with_error(tmp_path, MONITOR_KILLED), errored=True)
    assert status == INFEASIBLE and "memory monitor" in reason
    assert verdict(None, errored=True, max_epochs=3,
                   error_text=failures.failure_reason(SIGKILLED))[0] == INFEASIBLE


def test_rays_traceback_of_a_killed_trial_becomes_one_line(caplog):
    ray_filter = failures.OneLineMemoryKills()
    record = logging.LogRecord(failures.RAY_TRIAL_LOGGER, logging.ERROR, "tune_controller.py",
                               1336, "Trial task failed for trial trial_0000", (),
                               (RuntimeError, RuntimeError(SIGKILLED), None))
    with caplog.at_level(logging.WARNING, logger="sweep.failures"):
        assert ray_filter.filter(record) is False  # Ray's 25 lines dropped ...
    (line,) = [r.getMessage() for r in caplog.records]  # ... and one of ours instead
    assert line.startswith("trial trial_0000: out of memory") and "not retried" in line
    other = logging.LogRecord(failures.RAY_TRIAL_LOGGER, logging.ERROR, "x", 1, "Trial task "
                              "failed for trial t", (), (ValueError, ValueError("bad"), None))
    assert ray_filter.filter(other) is True  # any other failure: Ray's record as before


def test_the_fault_hook_reads_kill_when():
    faults = faults_from_env({FAULTS_ENV: '{"kill_when": {"batch_size": 2}, "kill_epoch": 2}'})
    assert faults == Faults(kill_when={"batch_size": 2}, kill_epoch=2)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_sigkilled_trial_is_infeasible_not_retried_and_the_sweep_goes_on(
        ray_session, tmp_path, monkeypatch, caplog):
    from sweep.runner import run_experiment

    # Set after Ray started: the driver reads it (sweep/faults.py), the workers never see it.
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"kill_when": {"batch_size": 2}}))
    experiment = load_experiment(SMOKE, ["--search.trials=3", "--scheduler.max_epochs=1",
                                         *TINY_DATA])
    with caplog.at_level(logging.INFO):
        summary = run_experiment(experiment, tmp_path)
    status = json.loads((summary.run_dir / "trial_status.json").read_text())
    killed = {t for t, e in status.items() if e["config"]["batch_size"] == 2}
    assert killed and len(killed) < len(status) == 3  # the others ran
    for trial_id, entry in status.items():
        if trial_id in killed:
            assert entry["status"] == "infeasible" and "SIGKILL" in entry["reason"], entry
            error = (summary.run_dir / TUNE_DIR / trial_id / "error.txt").read_text()
            assert error.count("Failure #") == 1, error  # killed once: never trained again
        else:
            assert entry["status"] == "complete", entry
    assert summary.counts["infeasible"] == len(killed) and summary.counts["failed"] == 0
    study = optuna.load_study(study_name="smoke", storage=journal_storage(summary.run_dir))
    for trial in study.trials:
        failed = trial.state == optuna.trial.TrialState.FAIL
        assert failed == (trial.user_attrs["ray_trial_id"] in killed)
    # Ray's traceback of each kill became one line of ours.
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    lines = [r.getMessage() for r in caplog.records if "not retried" in r.getMessage()]
    assert len(lines) == len(killed), lines


@pytest.mark.slow
def test_a_real_memory_monitor_kill_is_infeasible(tmp_path):
    """Ray's own memory monitor, not a fault hook: a sweep whose Ray kills any worker above 1 %
    of the machine's memory (RAY_memory_usage_threshold, read when Ray starts: so its own
    process, not the suite's shared session). `make fuzz`."""
    import os
    import subprocess

    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
           "RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(SMOKE), "--runs-dir", str(tmp_path),
         "--search.trials=1", "--scheduler.max_epochs=1", "--wandb.enabled=false", *TINY_DATA],
        cwd=SMOKE.parents[1], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (entry,) = json.loads((tmp_path / "smoke" / "trial_status.json").read_text()).values()
    assert entry["status"] == "infeasible", entry
    assert entry["reason"].startswith("out of memory: Ray's memory monitor killed its worker")
    assert "infeasible, not retried" in done.stdout + done.stderr
