"""After Ctrl-C (issue 24 item 13): a sweep's last lines point at `python -m sweep resume`, never
at Ray's `Tuner.restore(...)`, and name no best model that was never written."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

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


def test_an_interrupted_sweep_with_a_best_model_still_names_it(tmp_path):
    run_dir = tmp_path / "smoke"
    text = summary_text(interrupted(run_dir, best_trial="t1", best_val_dice=0.5, best_epoch=2,
                                    best_params={"lr": 0.01}))
    assert f"best model   {run_dir / 'best.pth'}" in text
    assert f"best config  {run_dir / 'best_config.yaml'}" in text
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
