"""Search settings on the searcher and scheduler alone (no Ray run). Reproducible mode's ask
rule: trial n is suggested once trials 0..n-lag have ended, and then exactly those are told,
whatever order trials ended in. The rung metric's bad values."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep.experiment import load_experiment, load_saved_experiment
from sweep.search import make_searcher

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"


def limiter(tmp_path, *overrides: str):
    experiment = load_experiment(QUICKSTART, ["--search.trials=8", "--search.startup_trials=2",
                                              "--search.sampler=tpe", *overrides])
    searcher = make_searcher(experiment, tmp_path, study_storage=optuna.storages.InMemoryStorage())
    searcher.set_search_properties("val_dice", "max", {})
    return searcher


def finish(searcher, number: int) -> None:
    """Trial t<number> trained all its epochs (quickstart: 6)."""
    searcher.on_trial_complete(f"t{number}", {"epoch": 6, "val_dice": 0.1 * number})


def told(searcher) -> list[int]:
    study = searcher.searcher._ot_study
    return [t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


def test_default_lag_is_twice_the_concurrency_and_a_short_trial_frees_its_slot(tmp_path):
    """Concurrency 2, lag 4: while trial 0 runs long, trials 1, 2 and 3 come and go in the other
    slot (with lag 2, trial 2 had to wait for trial 0: the slot stood empty)."""
    searcher = limiter(tmp_path)
    assert searcher.searcher._lag == 4
    assert searcher.suggest("t0") and searcher.suggest("t1")
    assert searcher.suggest("t2") is None  # the ConcurrencyLimiter: two at once
    for number in (1, 2):
        finish(searcher, number)
        assert searcher.suggest(f"t{number + 1}") is not None
    finish(searcher, 3)
    assert searcher.suggest("t4") is None  # trial 0 (4 back) still runs: wait
    assert told(searcher) == []  # trials 1-3 ended, but nothing is told out of order
    finish(searcher, 0)
    assert told(searcher) == [0]  # what trial 4's suggestion sees: trials 0..4-lag
    assert searcher.suggest("t4") is not None
    assert told(searcher) == [0, 1]  # once asked, trial 1 can be told (for trial 5's ask)


def test_lag_equal_to_the_concurrency_waits_for_the_oldest_trial(tmp_path):
    searcher = limiter(tmp_path, "--search.lag=2")
    assert searcher.suggest("t0") and searcher.suggest("t1")
    finish(searcher, 1)
    assert searcher.suggest("t2") is None  # trial 0 is 2 back and still running
    finish(searcher, 0)
    assert told(searcher) == [0]
    assert searcher.suggest("t2") is not None and told(searcher) == [0, 1]


def test_async_mode_has_no_lag(tmp_path):
    searcher = limiter(tmp_path, "--search.mode=async")
    assert searcher.searcher._lag == 0
    assert searcher.suggest("t0") and searcher.suggest("t1")
    finish(searcher, 1)
    assert told(searcher) == [1]  # told as it ends


def test_a_run_saved_before_search_lag_existed_resumes_with_the_lag_it_ran_with(tmp_path):
    saved = tmp_path / "experiment.yaml"
    text = "\n".join(line for line in QUICKSTART.read_text().splitlines()
                     if "sampler:" not in line)  # as then: TPE by default
    assert "lag" not in text
    saved.write_text(text)
    assert load_saved_experiment(saved).search.effective_lag() == 2  # its concurrency then
    assert load_experiment(saved, []).search.effective_lag() == 4  # a new run: twice it


def test_random_search_never_waits(tmp_path):
    """Random suggestions do not depend on results, so reproducible mode need not hold any
    ask back: a slot is refilled as soon as it frees."""
    searcher = limiter(tmp_path, "--search.sampler=random")
    assert searcher.searcher._lag == 0
    assert searcher.suggest("t0") and searcher.suggest("t1")
    finish(searcher, 1)
    assert searcher.suggest("t2") is not None  # with TPE and lag 2 this waited for trial 0


@pytest.mark.parametrize("lag", ["1", "-1", "100001"])
def test_a_lag_below_the_concurrency_or_absurd_is_refused(lag):
    from training.settings import ConfigError

    with pytest.raises(ConfigError, match="search.lag"):
        load_experiment(QUICKSTART, [f"--search.lag={lag}"])


def test_an_unknown_rung_metric_is_refused_naming_the_choices():
    from training.settings import ConfigError

    with pytest.raises(ConfigError, match="scheduler.metric = 'accuracy'.*val_dice or val_iou "
                                          "or val_loss"):
        load_experiment(QUICKSTART, ["--scheduler.metric=accuracy"])
