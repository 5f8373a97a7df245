"""Reproducible sweeps: the same experiment run twice at concurrency 3, its first trials paced
(each reports an epoch only after another has, set on the driver through an environment
variable) so that they report in opposite orders, gives the same trials, statuses, metrics,
Optuna study and best trial. The same pair of runs in async mode differs, so the comparison
can fail."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from sweep.experiment import load_experiment
from sweep.faults import EPOCH_DELAYS_ENV
from sweep.ordered_asha import rung_levels
from sweep.rundir import journal_storage, read_trials, storage_of
from sweep.runner import run_experiment
from tests.fake_trials import FakeController, FakeTrial
from tests.fake_trials import simulate as simulate_trials

SMOKE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"
TINY = ["--train.width=4", "--train.synthetic_images=40", "--train.synthetic_size=32",
        "--train.val_percent=20", "--search.trials=5", "--search.concurrency=3",
        "--search.startup_trials=1", "--scheduler.max_epochs=2", "--scheduler.grace_period=1",
        "--scheduler.reduction_factor=2", "--resources.cpus=0.5", "--wandb.enabled=false",
        # lag 3 (the default would be 6, more than the 5 trials): trials 3 and 4 are asked
        # after trials 0 and 1 are told, so TPE models from results and order could matter
        "--search.lag=3"]
METRICS = ("epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr")  # no timing keys
CLOCK_KEYS = ("placed_at", "first_step_at", "startup_s", "compute_s", "ended_at")
# How trials 0, 1 and 2 are paced (sweep/faults.py: pace; later trials: not at all). "forward":
# trial 1 reports each epoch only after trial 0 has (or has ended), trial 2 after trial 1, so
# trial 0 reports and finishes first; "backward": the other way round. A strict order, without
# per-epoch sleeps long enough to outlast a loaded machine's start-up skew.
ORDERS = {"forward": [0, {"after": 0}, {"after": 1}],
          "backward": [{"after": 1}, {"after": 2}, 0]}


def sweep(mode: str, order: str, runs_dir: Path, monkeypatch, *overrides: str) -> dict:
    monkeypatch.setenv(EPOCH_DELAYS_ENV, json.dumps(ORDERS[order]))
    experiment = load_experiment(SMOKE, [*TINY, f"--search.mode={mode}", *overrides])
    summary = run_experiment(experiment, runs_dir / f"{mode}-{order}")
    return outcome(summary)


def outcome(summary) -> dict:
    """Everything that must not depend on timing, keyed by trial number (ids are random)."""
    run_dir = summary.run_dir
    status = json.loads((run_dir / "trial_status.json").read_text())
    records = {r.trial_id: r for r in read_trials(storage_of(run_dir))}
    trials = {}
    for trial_id, entry in status.items():
        rows = [{k: v for k, v in row.items() if k in METRICS or k.startswith("val_dice_")}
                for row in records[trial_id].rows]  # val_dice_std, val_dice_seed<S>
        timeless = {k: v for k, v in entry.items() if k not in CLOCK_KEYS}  # when, not what
        trials[entry["number"]] = {**timeless, "metrics": rows}
    study = optuna.load_study(study_name="smoke", storage=journal_storage(run_dir))
    told = [(t.number, t.state.name, t.value, t.params, t.intermediate_values,
             t.user_attrs.get("status"), t.user_attrs.get("reason")) for t in study.trials]
    best = (status[summary.best_trial]["number"], summary.best_val_dice, summary.best_epoch,
            summary.best_params)
    # The order trials 0-2 reported their first epoch in: what the pacing was meant to set.
    first_reports = {entry["number"]: records[trial_id].rows[0]["reported_at"]
                     for trial_id, entry in status.items() if entry["number"] < 3}
    order = sorted(first_reports, key=first_reports.get)
    return {"trials": trials, "study": told, "best": best, "counts": summary.counts,
            "order": order,
            "best_config": (run_dir / "best_config.yaml").read_text().replace(str(run_dir), "")}


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    return tmp_path_factory.mktemp("repro")


def test_reproducible_sweep_ignores_the_order_trials_finish_in(runs, monkeypatch):
    """Two seeds per configuration: ASHA and TPE see their mean."""
    first = sweep("reproducible", "forward", runs, monkeypatch, "--search.seeds=2")
    second = sweep("reproducible", "backward", runs, monkeypatch, "--search.seeds=2")
    assert sorted(first["trials"]) == list(range(5))
    assert (first["order"], second["order"]) == ([0, 1, 2], [2, 1, 0])  # the orders differed
    for number in range(5):
        assert first["trials"][number] == second["trials"][number], f"trial {number}"
    assert first["study"] == second["study"]
    assert first["best"] == second["best"] and first["counts"] == second["counts"]
    statuses = {t["status"] for t in first["trials"].values()}
    assert statuses == {"complete", "pruned"}, statuses  # ASHA decided something
    assert first["best_config"] == second["best_config"]
    assert first["best_config"].startswith("# seeds: [0, 1]\n# val_dice at epoch")
    for trial in first["trials"].values():
        assert "seed" not in trial["config"]  # never searched
        for row in trial["metrics"]:
            assert row["val_dice"] == pytest.approx((row["val_dice_seed0"]
                                                     + row["val_dice_seed1"]) / 2)


def test_reproducible_random_search_tells_as_trials_end_and_still_agrees(runs, monkeypatch):
    """The random sampler asks without waiting (its draws never depend on results) and
    Optuna is told as trials end; OrderedASHA still orders the pruning decisions."""
    random = ("--search.sampler=random", "--scheduler.metric=val_loss")
    first = sweep("reproducible", "forward", runs / "random", monkeypatch, *random)
    second = sweep("reproducible", "backward", runs / "random", monkeypatch, *random)
    for number in range(5):
        assert first["trials"][number] == second["trials"][number], f"trial {number}"
    assert first["study"] == second["study"] and first["best"] == second["best"]
    assert {t["status"] for t in first["trials"].values()} == {"complete", "pruned"}


def test_async_sweep_depends_on_the_order_trials_finish_in(runs, monkeypatch):
    """Built to differ: with one start-up trial, TPE's first modelled suggestion (trial 3)
    comes from the first trial told, which is trial 0 in one run and trial 2 in the other."""
    first = sweep("async", "forward", runs, monkeypatch)
    second = sweep("async", "backward", runs, monkeypatch)
    assert first["trials"][3]["config"] != second["trials"][3]["config"]
    assert first["study"] != second["study"]


def test_rung_levels_are_ashas_below_max_t():
    assert rung_levels(1, 2, 6) == [1, 2, 4]
    assert rung_levels(1, 2, 4) == [1, 2]  # a decision at max_t would change nothing
    assert rung_levels(2, 3, 20) == [2, 6, 18]
    assert rung_levels(3, 2, 3) == []


# ---- OrderedASHA alone, against many arrival orders (no Ray run) -------------------------
def simulate(curves: list[list[float]], seed: int, metric: str = "val_dice",
             mode: str = "max") -> list[tuple[str, int]]:
    """OrderedASHA on trials reporting ``curves`` in a random interleaving, 3 at a time
    (tests/fake_trials.py); returns each trial's (status, epochs trained)."""
    from sweep.ordered_asha import OrderedASHA

    scheduler = OrderedASHA(metric=metric, mode=mode, max_t=len(curves[0]), grace_period=1,
                            reduction_factor=2)
    return simulate_trials(scheduler, [[{metric: v} for v in curve] for curve in curves], seed)


def test_ordered_asha_decides_the_same_whatever_the_arrival_order():
    import random

    rng = random.Random(0)
    curves = [sorted(rng.random() for _ in range(8)) for _ in range(12)]  # rungs 1, 2, 4
    outcomes = {tuple(simulate(curves, seed)) for seed in range(40)}
    assert len(outcomes) == 1
    (outcome,) = outcomes
    assert {epochs for _, epochs in outcome} > {8} and all(s == "TERMINATED" for s, _ in outcome)


def test_ordered_asha_keeps_a_trial_tune_retries_after_an_error():
    """Tune re-adds a trial it retries from its last checkpoint (PENDING, having reported):
    the scheduler keeps it once, with its rung values, and leaves it PENDING for Tune. It
    listed it twice and marked it PAUSED behind Tune's back, which Tune asserts on: a sweep
    with a crash and pruning on stopped with AssertionError (trial, 'PAUSED')."""
    from sweep.ordered_asha import OrderedASHA

    scheduler = OrderedASHA(metric="val_dice", mode="max", max_t=4, grace_period=1,
                            reduction_factor=2)
    controller = FakeController(scheduler)
    first, second = FakeTrial(0), FakeTrial(1)
    for trial in (first, second):
        scheduler.on_trial_add(controller, trial)
    scheduler.on_trial_result(controller, first, {"epoch": 1, "val_dice": 0.6})
    first.has_reported_at_least_once = True
    scheduler.on_trial_error(controller, first)
    first.status = "PENDING"  # Tune requeues it
    scheduler.on_trial_add(controller, first)
    assert first.status == "PENDING"
    assert [t.trial_id for t in scheduler._trials] == ["t0", "t1"]
    assert scheduler._values["t0"] == {1: 0.6}  # the rung value it reported stands
    assert scheduler.choose_trial_to_run(controller) is first


def test_ordered_asha_on_val_loss_keeps_the_lowest_losses():
    """scheduler.metric = val_loss: the same decisions as val_dice on the mirrored curves, so
    "lower is better" is honoured at every rung, and still whatever the arrival order."""
    import random

    rng = random.Random(1)
    losses = [sorted((rng.random() for _ in range(8)), reverse=True) for _ in range(12)]
    on_loss = {tuple(simulate(losses, seed, "val_loss", "min")) for seed in range(20)}
    assert len(on_loss) == 1
    mirrored = simulate([[-v for v in curve] for curve in losses], 0)
    assert list(next(iter(on_loss))) == mirrored
    kept = [number for number, (_, epochs) in enumerate(mirrored) if epochs == 8]
    assert 0 < len(kept) < 12


def test_the_rung_metric_reaches_ashas_both_kinds(tmp_path):
    from ray.tune.schedulers import ASHAScheduler

    from sweep.ordered_asha import OrderedASHA
    from sweep.search import make_scheduler

    for mode, kind in (("reproducible", OrderedASHA), ("async", ASHAScheduler)):
        experiment = load_experiment(SMOKE, [f"--search.mode={mode}",
                                             "--scheduler.metric=val_loss"])
        scheduler = make_scheduler(experiment)
        assert isinstance(scheduler, kind)
        assert (scheduler._metric, scheduler._mode if kind is ASHAScheduler
                else scheduler._sign) == ("val_loss", "min" if kind is ASHAScheduler else -1.0)
