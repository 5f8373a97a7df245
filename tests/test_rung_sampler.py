"""The BOHB-style sampler (sweep/rung_sampler.py): it models the largest budget at which enough
trials finished, on the rung metric there (sign-corrected) and the objective at the full
budget; running trials enter as the worst value (constant liar); only finished trials count,
so in reproducible mode its suggestions are a function of the told trials alone."""
from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweep.rung_sampler import RUNG_VALUES_ATTR, RungTPESampler

SPACE = {"x": FloatDistribution(0.0, 1.0)}


def sampler(min_trials: int = 3) -> RungTPESampler:
    # rungs 1, 2, 4 of a 6-epoch budget; val_loss at the rungs (lower is better)
    return RungTPESampler(rungs=[1, 2, 4], max_epochs=6, rung_sign=-1.0,
                          min_trials=min_trials, seed=0)


def add(study, x: float, rungs: dict[int, float], value: float | None = None,
        state=TrialState.PRUNED) -> None:
    study.add_trial(optuna.trial.create_trial(
        params={"x": x}, distributions=SPACE, state=state, value=value,
        user_attrs={RUNG_VALUES_ATTR: {str(k): v for k, v in rungs.items()}},
        intermediate_values={k: 0.0 for k in rungs}))


def test_the_largest_budget_with_enough_finished_trials_is_modelled():
    study = optuna.create_study(direction="maximize")
    s = sampler(min_trials=3)
    for i in range(4):  # four trials stopped at rung 1
        add(study, 0.1 * i, {1: 0.9 - 0.1 * i})
    for i in range(3):  # three reached rung 2; two of them rung 4
        add(study, 0.5 + 0.1 * i, {1: 0.5, 2: 0.4 - 0.1 * i, **({4: 0.3} if i else {})})
    finished = study.get_trials()
    assert s.budget(finished) == 2  # rung 4 has 2 < 3 trials, rung 2 has 3
    view = s.view(study)
    values = sorted(round(t.value, 6) for t in view.get_trials())
    assert values == [-0.4, -0.3, -0.2]  # val_loss at rung 2, negated: higher is better
    # a complete trial adds the full budget once min_trials of them exist
    for i in range(3):
        add(study, 0.9, {1: 0.1, 2: 0.1, 4: 0.1}, value=0.7 + 0.01 * i,
            state=TrialState.COMPLETE)
    assert s.budget(study.get_trials()) == 6
    assert sorted(t.value for t in s.view(study).get_trials()) == pytest.approx([0.7, 0.71, 0.72])


def test_running_trials_are_lies_and_their_reports_are_not_read():
    study = optuna.create_study(direction="maximize")
    s = sampler(min_trials=3)
    for i in range(3):
        add(study, 0.2 * i, {1: 0.5 + 0.1 * i})
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.99}, distributions=SPACE, state=TrialState.RUNNING,
        user_attrs={RUNG_VALUES_ATTR: {"1": 0.0, "2": 0.0}}))  # a great, unfinished report
    assert s.budget(study.get_trials()) == 1
    view = s.view(study).get_trials()
    assert len(view) == 4 and min(t.value for t in view) == pytest.approx(-0.7)
    running = [t for t in view if t.params["x"] == 0.99]
    assert running[0].value == pytest.approx(-0.7)  # the worst seen, not its own 0.0


def test_below_min_trials_it_samples_at_random_and_is_seeded():
    def suggestions(seed: int) -> list[float]:
        study = optuna.create_study(direction="maximize", sampler=RungTPESampler(
            rungs=[1, 2], max_epochs=4, rung_sign=-1.0, min_trials=2, seed=seed))
        out = []
        for _i in range(6):
            trial = study.ask(SPACE)
            trial.report(0.0, 1)
            trial.set_user_attr(RUNG_VALUES_ATTR, {"1": abs(trial.params["x"] - 0.3)})
            study.tell(trial, state=TrialState.PRUNED)
            out.append(trial.params["x"])
        return out

    assert suggestions(3) == suggestions(3) and suggestions(3) != suggestions(4)


def test_the_sweeps_searcher_records_the_rung_metric_per_epoch():
    from bench.lc_methods import experiment_for
    from bench.lc_replay import simulate
    from tests.test_lc_search import held_out_table

    table = held_out_table()
    storage = optuna.storages.InMemoryStorage()
    experiment = experiment_for(table, "bohb", seed=0, concurrency=2, trials=8)
    trace = simulate(experiment, table, storage=storage)
    study = optuna.load_study(study_name=experiment.name, storage=storage)
    for trial, replayed in zip(study.get_trials(), trace.trials):
        run = table.run(replayed["params"])
        rungs = trial.user_attrs[RUNG_VALUES_ATTR]
        assert rungs == {str(e): pytest.approx(run["val_loss"][e - 1])
                         for e in range(1, replayed["epochs"] + 1)}


def test_hyperband_brackets_compare_a_trial_with_its_own_bracket_only():
    """OrderedASHA with 3 brackets: trial n is in bracket n % 3, bracket b's first rung is
    2**b; in the replay, bracket-2 trials (first rung 4) always train past epoch 2, and the
    search stays invariant under uneven epoch times."""
    from bench.lc_methods import experiment_for
    from bench.lc_replay import simulate
    from sweep.ordered_asha import OrderedASHA
    from tests.test_lc_search import held_out_table

    scheduler = OrderedASHA(metric="val_dice", mode="max", max_t=6, grace_period=1,
                            reduction_factor=2, brackets=3)
    assert scheduler.bracket_rungs == [[1, 2, 4], [2, 4], [4]]
    table = held_out_table()  # 3 epochs: rungs 1, 2 / 2 / none
    experiment = experiment_for(table, "random_hyperband", seed=0, concurrency=2, trials=24)
    trials = simulate(experiment, table).trials
    by_bracket = [[t["epochs"] for t in trials[b::3]] for b in range(3)]
    assert min(by_bracket[1]) >= 2 and set(by_bracket[2]) == {3}
    assert 1 in by_bracket[0]  # bracket 0 stops some at its first rung
    assert simulate(experiment, table, time_noise=4).trials == trials
