"""sweep/mo_asha.py: MO-ASHA's rung rule, its reproducible scheduler (OrderedASHA's ordering,
objective vectors compared) and its async one, driven by small fake trials (no Ray run)."""
from __future__ import annotations

import json
import pickle
import random

import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from sweep.mo_asha import AsyncMOASHA, OrderedMOASHA, keeps_at_rung, rung_objectives
from sweep.ordered_asha import OrderedASHA
from sweep.pareto import pareto_front, rank_for_promotion
from tests.fake_trials import FakeController, FakeTrial, simulate

DICE_FLOPS = [("val_dice", "max"), ("flops", "min")]


def curves(seed: int, trials: int = 12, epochs: int = 8) -> list[list[dict]]:
    """Rising val_dice and val_loss falling with it, and a constant cost per trial."""
    rng = random.Random(seed)
    table = []
    for _ in range(trials):
        dice, flops = sorted(rng.random() for _ in range(epochs)), rng.choice([1, 2, 4, 8]) * 1e6
        table.append([{"val_dice": d, "val_loss": 1 - d, "flops": flops} for d in dice])
    return table


def ordered(objectives, **kw) -> OrderedMOASHA:
    return OrderedMOASHA(objectives=objectives, max_t=8, grace_period=1, reduction_factor=2,
                         **kw)


# ---- the rung rule --------------------------------------------------------------------------
def test_a_rung_keeps_exactly_the_non_dominated_top_one_over_eta():
    """9 trials at a rung, eta 3: keep 3. Here front 0 has exactly 3 points, so those are
    kept, and each of the others is stopped, whatever its rank inside its front."""
    points = [(0.9, 8), (0.5, 2), (0.7, 4), (0.6, 8), (0.4, 4), (0.3, 2), (0.8, 9), (0.2, 9),
              (0.65, 5)]
    modes = ["max", "min"]
    assert pareto_front(points, modes) == [0, 1, 2]
    kept = [i for i in range(9) if keeps_at_rung(points, i, modes, 3)]
    assert kept == [0, 1, 2]
    # eta 2: ceil(9/2) = 5 kept: front 0 and the first two of front 1 by the epsilon net
    kept = {i for i in range(9) if keeps_at_rung(points, i, modes, 2)}
    assert kept == set(rank_for_promotion(points, modes)[:5]) and {0, 1, 2} < kept


def test_fewer_than_eta_trials_keep_their_best_and_ties_go_to_the_earlier():
    modes = ["max", "min"]
    assert keeps_at_rung([(0.5, 3)], 0, modes, 3)  # alone at the rung
    assert not keeps_at_rung([(0.6, 2), (0.5, 3)], 1, modes, 3)  # dominated
    assert keeps_at_rung([(0.6, 2), (0.5, 3)], 0, modes, 3)
    assert not keeps_at_rung([(0.5, 3), (0.5, 3)], 1, modes, 2)  # equal: the earlier stays


# ---- reproducible mode ------------------------------------------------------------------------
def test_reproducible_decisions_do_not_depend_on_the_arrival_order():
    table = curves(0)
    outcomes = {tuple(simulate(ordered(DICE_FLOPS), table, seed)) for seed in range(30)}
    assert len(outcomes) == 1
    (outcome,) = outcomes
    assert {epochs for _, epochs in outcome} > {8}  # some stopped early, some ran through
    assert all(status == "TERMINATED" for status, _ in outcome)
    # the costs take part: on val_dice alone the same results prune other trials
    dice_only = simulate(ordered([("val_dice", "max")]), table, 0)
    assert dice_only != list(outcome)


def test_one_objective_decides_as_ordered_asha_on_the_same_results():
    table = curves(1)
    for metric, mode in (("val_dice", "max"), ("val_loss", "min")):
        for seed in range(5):
            ours = simulate(ordered([(metric, mode)]), table, seed)
            theirs = simulate(OrderedASHA(metric=metric, mode=mode, max_t=8, grace_period=1,
                                          reduction_factor=2), table, seed)
            assert ours == theirs
    # brackets too: trial n is in bracket n % brackets, as in OrderedASHA
    ours = simulate(ordered([("val_dice", "max")], brackets=2), table, 0)
    theirs = simulate(OrderedASHA(metric="val_dice", mode="max", max_t=8, grace_period=1,
                                  reduction_factor=2, brackets=2), table, 0)
    assert ours == theirs and ours != simulate(ordered([("val_dice", "max")]), table, 0)


def test_a_missing_objective_is_an_error_naming_it():
    """At a rung, where it would decide; a result past every rung (the last result a resumed
    trial says again, with the loop's keys only) decides nothing and passes."""
    for scheduler in (ordered(DICE_FLOPS), AsyncMOASHA(objectives=DICE_FLOPS, max_t=8,
                                                      grace_period=1, reduction_factor=2)):
        trial, controller = FakeTrial(0), FakeController(scheduler)
        scheduler.on_trial_add(controller, trial)
        with pytest.raises(ValueError, match=r"epoch 1 has no flops \(objectives"):
            scheduler.on_trial_result(controller, trial, {"epoch": 1, "val_dice": 0.5})
        for epoch in (1, 2, 4):
            result = {"epoch": epoch, "val_dice": 0.5, "flops": 1e6}
            assert scheduler.on_trial_result(controller, trial, result) == TrialScheduler.CONTINUE
        assert scheduler.on_trial_result(controller, trial, {"epoch": 8, "val_dice": 0.5}) \
            == TrialScheduler.CONTINUE


def test_objectives_are_checked_and_the_primary_score_is_compared_as_the_rung_metric():
    with pytest.raises(ValueError, match="'max' or 'min', got 'maximize'"):
        ordered([("val_dice", "maximize"), ("flops", "min")])
    with pytest.raises(ValueError, match="named twice"):
        ordered([{"flops": "min"}, {"flops": "min"}])
    rung_metrics = {"val_dice": "max", "val_loss": "min"}
    given = [{"val_dice": "max"}, {"flops": "min"}]
    assert rung_objectives(given, "val_loss", rung_metrics) == [("val_loss", "min"),
                                                                ("flops", "min")]
    assert rung_objectives(given, "val_dice", rung_metrics) == DICE_FLOPS
    costs_first = [{"flops": "min"}, {"val_dice": "max"}]  # a cost is compared as it is
    assert rung_objectives(costs_first, "val_loss", rung_metrics) == [("flops", "min"),
                                                                      ("val_dice", "max")]


# ---- async mode ------------------------------------------------------------------------------
def test_async_ranks_against_what_its_rung_recorded_so_far():
    scheduler = AsyncMOASHA(objectives=DICE_FLOPS, max_t=8, grace_period=1, reduction_factor=2)
    trials = [FakeTrial(n) for n in range(5)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)

    def report(n, epoch, dice, flops):
        return scheduler.on_trial_result(None, trials[n], {"epoch": epoch, "val_dice": dice,
                                                           "flops": flops})

    assert report(2, 1, 0.5, 4e6) == TrialScheduler.CONTINUE  # first at the rung
    assert report(0, 1, 0.4, 8e6) == TrialScheduler.STOP  # dominated by trial 2
    assert report(1, 1, 0.3, 1e6) == TrialScheduler.CONTINUE  # cheapest: rank 2 of 3, kept 2
    assert report(2, 2, 0.6, 4e6) == TrialScheduler.CONTINUE  # first at rung 2
    assert report(3, 1, 0.45, 5e6) == TrialScheduler.STOP  # dominated by 2; 4 at rung 1, keep 2
    # epoch 3 reaches rung 2: beside trial 2 (0.6, 4e6), a front of two, keep 1: it loses on
    # the primary objective
    assert report(1, 3, 0.55, 1e6) == TrialScheduler.STOP
    assert report(4, 1, 0.55, 3e6) == TrialScheduler.CONTINUE  # front {1, 4}, keep 3 of 5
    assert report(4, 2, 0.65, 3e6) == TrialScheduler.CONTINUE  # front {1, 4}: best dice
    assert report(4, 4, 0.1, 9e6) == TrialScheduler.CONTINUE  # first at rung 4


def test_async_with_one_objective_decides_as_rays_asha():
    table = curves(2)
    rng = random.Random(0)
    ours = AsyncMOASHA(objectives=[("val_loss", "min")], max_t=8, grace_period=1,
                       reduction_factor=2)
    rays = ASHAScheduler(time_attr="epoch", metric="val_loss", mode="min", max_t=8,
                         grace_period=1, reduction_factor=2)
    trials = [FakeTrial(n) for n in range(len(table))]
    for trial in trials:
        ours.on_trial_add(None, trial)
        rays.on_trial_add(None, trial)
    epochs, live, decisions = [0] * len(table), list(range(len(table))), []
    while live:
        n = rng.choice(live)
        epochs[n] += 1
        result = {"epoch": epochs[n], **table[n][epochs[n] - 1]}
        decision = ours.on_trial_result(None, trials[n], result)
        theirs = rays.on_trial_result(None, trials[n], result)
        if epochs[n] < 8:  # Ray's stops every trial at max_t; the trainable ends there itself
            assert decision == theirs, (n, epochs[n])
        decisions.append(decision)
        if decision == TrialScheduler.STOP or epochs[n] == 8:
            live.remove(n)
    assert TrialScheduler.STOP in decisions


def test_async_replays_a_restored_trials_results(tmp_path):
    """A resumed sweep's trial brings its rung values back: a later trial is ranked against
    them (here it is dominated at rung 1, and stopped)."""
    (tmp_path / "result.json").write_text("".join(
        json.dumps({"epoch": e, "val_dice": 0.8, "flops": 1e6}) + "\n" for e in (1, 2)))
    scheduler = AsyncMOASHA(objectives=DICE_FLOPS, max_t=8, grace_period=1, reduction_factor=2)
    scheduler.on_trial_add(None, FakeTrial(0, path=str(tmp_path)))
    newcomer = FakeTrial(1)
    scheduler.on_trial_add(None, newcomer)
    result = {"epoch": 1, "val_dice": 0.5, "flops": 2e6}
    assert scheduler.on_trial_result(None, newcomer, result) == TrialScheduler.STOP


# ---- what Tune relies on --------------------------------------------------------------------
def test_the_schedulers_pickle_and_share_only_the_names_tune_reads():
    """Tune pickles the scheduler into tuner.pkl (resume), reads ``metric`` (= _metric, the
    first objective) to check results, and results must come one at a time."""
    from tests.test_private_apis import private_names

    fifo = set(dir(FIFOScheduler()))
    for kind in (OrderedMOASHA, AsyncMOASHA):
        assert private_names(kind) & fifo <= {"_metric", "_supports_buffered_results"}
    for scheduler in (ordered(DICE_FLOPS), AsyncMOASHA(objectives=DICE_FLOPS, max_t=8,
                                                      grace_period=1, reduction_factor=2)):
        assert scheduler.metric == "val_dice" and scheduler.supports_buffered_results is False
        assert pickle.loads(pickle.dumps(scheduler)).objectives == DICE_FLOPS
