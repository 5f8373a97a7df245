"""After Ctrl-C (issue 24 item 13): a sweep's last lines point at `python -m sweep resume`, never
at Ray's `Tuner.restore(...)`, and name no best model that was never written. SIGTERM (item 8)
stops a sweep the same way and exits 143 (a real one: tests/test_faults.py, `make fuzz`)."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from sweep import sigterm
from sweep.__main__ import main
from sweep.ray_session import RAY_RUN_LOGGER, fit
from sweep.runner import RunSummary, summary_text

# What Ray 2.60's tune.run logs after a SIGINT (ray/tune/tune.py; tests/test_private_apis.py).
RAY_HINT = ('Experiment has been interrupted, but the most recent state was saved.\nResume '
            'experiment with: Tuner.restore(path="/runs/smoke/tune", trainable=...)')


def interrupted(run_dir: Path, **best) -> RunSummary:
    counts = {"complete": 1, "pruned": 0, "infeasible": 0, "failed": 0, "running": 2}
    return RunSummary("smoke", run_dir, 12.0, counts, **best)


def test_an_interrupted_sweep_without_a_best_model_names_none(tmp_path):
    run_dir = tmp_path / "smoke"
    text = summary_text(interrupted(run_dir))
    assert "best.pth" not in text and "best_config.yaml" not in text, text
    assert f"unfinished   python -m sweep resume {run_dir}" in text
    assert "no trial produced a checkpoint" in text
    assert "sweep confirm" not in text  # no scored trial: nothing to confirm


def test_an_interrupted_sweep_with_a_best_model_still_names_it(tmp_path):
    run_dir = tmp_path / "smoke"
    text = summary_text(interrupted(run_dir, best_trial="t1", best_val_dice=0.5, best_epoch=2,
                                    best_params={"lr": 0.01}))
    assert f"best model   {run_dir / 'best.pth'}" in text
    assert f"best config  {run_dir / 'best_config.yaml'}" in text
    assert f"seed check   python -m sweep confirm {run_dir}" in text
    assert f"python -m sweep resume {run_dir}" in text


class Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class InterruptedTuner:
    """A Tuner whose fit logs what Ray's does after a SIGINT, then returns no results."""

    def fit(self):
        logger = logging.getLogger(RAY_RUN_LOGGER)
        logger.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.")
        logger.warning(RAY_HINT)
        return []


@pytest.fixture
def ray_run_log():
    """What reaches Ray's run logger, starting without the filters an earlier sweep added."""
    kept, logger = Kept(), logging.getLogger(RAY_RUN_LOGGER)
    filters, logger.filters = logger.filters, []
    logger.addHandler(kept)
    yield kept
    logger.removeHandler(kept)
    logger.filters = filters


def test_a_sweep_s_fit_drops_ray_s_restore_hint_and_keeps_its_other_lines(tmp_path,
                                                                           ray_run_log):
    assert fit(InterruptedTuner(), tmp_path) == set()
    assert ray_run_log.lines == ["Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray "
                                 "Tune run."]


# ---- SIGTERM (item 8) -------------------------------------------------------------------------
@pytest.fixture
def sigterm_caught(monkeypatch):
    """sweep.sigterm's handler installed; the process's handlers and its flag put back after."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sigterm, "_received", False)
    sigterm.catch()
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def test_sigterm_runs_what_sigint_would_while_a_tuner_runs(sigterm_caught):
    """Tune's SIGINT handler (set while a Tuner runs) stops the sweep after saving its state."""
    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [signal.SIGINT] and sigterm.received()


@pytest.mark.parametrize("sigint", [signal.default_int_handler, signal.SIG_IGN])
def test_sigterm_outside_a_tuner_is_a_keyboard_interrupt(sigterm_caught, sigint):
    signal.signal(signal.SIGINT, sigint)  # SIG_IGN: a background job's, none to borrow
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert sigterm.received()


def ready_then_sleep(ready) -> None:
    ready.send(True)
    time.sleep(60)


def test_a_forked_child_ends_on_sigterm_even_when_the_parent_would_not(sigterm_caught):
    """Pool.terminate() sends each worker one SIGTERM and waits for it; a worker that borrowed
    the parent's handler ran Tune's SIGINT handler, which swallows the first signal, and the
    wait never ended."""
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # as Tune's, for a first signal
    parent_end, child_end = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(target=ready_then_sleep,
                                                        args=(child_end,))
    child.start()
    try:
        assert parent_end.poll(30) and parent_end.recv()
        child.terminate()
        child.join(timeout=10)
        assert child.exitcode == -signal.SIGTERM
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def sigterm_to_self(args) -> int:
    os.kill(os.getpid(), signal.SIGTERM)
    return 0


def test_a_command_sigterm_stopped_exits_143(sigterm_caught, monkeypatch):
    """While a Tuner runs, Tune's handler stops it and the command ends as usual."""
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    monkeypatch.setattr("sweep.cli.sweep.run_sweep", sigterm_to_self)
    assert main(["run", "experiments/smoke.yaml"]) == 143


def test_sigterm_before_the_tuner_exits_143(sigterm_caught, monkeypatch, capsys):
    # Python's own SIGINT handler, as in a fresh `python -m sweep` (a Tuner run earlier in this
    # test process may have left Tune's installed)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr("sweep.cli.sweep.run_sweep", sigterm_to_self)
    assert main(["run", "experiments/smoke.yaml"]) == 143
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_sweep_sigterm_stopped_between_trials_names_resume(tmp_path):
    run_dir = tmp_path / "smoke"
    between_trials = RunSummary("smoke", run_dir, 12.0, {"complete": 2, "pruned": 0,
                                                         "infeasible": 0, "failed": 0})
    assert "sweep resume" not in summary_text(between_trials)
    between_trials.stopped = True
    assert f"unfinished   python -m sweep resume {run_dir}" in summary_text(between_trials)
