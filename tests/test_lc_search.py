"""The learning-curve benchmark (issue 14): the table generator resumes; a replayed search reads
the table's values through the product's searcher and ASHA; trial-epochs to a target are
counted right on a hand-made table; the simulated Tune loop gives the same trials as a real
Tuner; the `search` benchmark's tiny mode runs end to end."""
from __future__ import annotations

import gzip
import json

import pytest

from bench.child import BenchError
from bench.lc_methods import experiment_for
from bench.lc_replay import Table, ray_replay, simulate
from bench.lc_search import first_reaching, replay_one, summarise
from bench.lc_table import generate, jobs, load_table, settings_for

# ---- a hand-made table --------------------------------------------------------------------------
# Three learning rates x two batch sizes, 2 seeds, 3 epochs. val_dice climbs to a plateau that
# only lr 1e-3 reaches well; seed 1 runs are a little worse; epochs of batch 8 take 2 s, of
# batch 4 3 s (a trial's epochs differ, so the simulated clock is checked too).
PLATEAU = {1e-4: 0.2, 1e-3: 0.8, 1e-2: 0.0}


def curve(lr: float, batch: int, seed: int) -> list[float]:
    top = PLATEAU[lr] * (1.0 if batch == 8 else 0.9) - 0.01 * seed
    return [round(top * e / 3, 6) for e in (1, 2, 3)]


def hand_table() -> Table:
    grid = {"lr": [1e-4, 1e-3, 1e-2], "optimizer": ["adamw"], "batch_size": [4, 8]}
    configs = []
    for lr in grid["lr"]:
        for batch in grid["batch_size"]:
            runs = [{"seed": s, "val_dice": curve(lr, batch, s),
                     "val_loss": [1 - v for v in curve(lr, batch, s)],
                     "epoch_s": [2.0 if batch == 8 else 3.0, 2.0 if batch == 8 else 3.0, 1.0]}
                    for s in (0, 1)]
            configs.append({"params": {"lr": lr, "optimizer": "adamw", "batch_size": batch},
                            "runs": runs})
    return Table({"format": 1, "code_version": "test", "configs": configs,
                  "settings": {"grid": grid, "max_epochs": 3, "seeds": [0, 1]}})


def test_table_snaps_suggestions_to_the_grid_and_knows_its_best():
    table = hand_table()
    assert table.snap({"lr": 2.9e-4, "batch_size": 4}) == {"lr": 1e-4, "optimizer": "adamw",
                                                           "batch_size": 4}
    assert table.snap({"lr": 3.3e-4, "batch_size": 4})["lr"] == 1e-3  # nearer on a log scale
    # a trial trains both seeds in lockstep: the mean curve, each epoch the seeds' summed time
    run = table.run({"lr": 1e-3, "batch_size": 8})
    assert run["val_dice"] == pytest.approx([(a + b) / 2 for a, b in
                                             zip(curve(1e-3, 8, 0), curve(1e-3, 8, 1))])
    assert run["epoch_s"] == [4.0, 4.0, 2.0] and table.seeds == 2
    assert table.best == pytest.approx((0.8 + 0.79) / 2)  # the best epoch of the mean
    assert table.space() == {"lr": {"loguniform": [1e-4, 1e-2]},
                             "batch_size": {"choice": [4, 8]}}  # never the seed
    assert table.fixed_train() == {"optimizer": "adamw"}


def test_replayed_search_reports_the_tables_values_on_the_tables_clock():
    table = hand_table()
    trace = simulate(experiment_for(table, "random", seed=3, concurrency=1), table,
                     max_trials=5)
    assert [t["epochs"] for t in trace.trials] == [3] * 5  # no stopping: every epoch
    clock = 0.0
    for event in trace.events:
        run = table.run(trace.trials[event.trial]["params"])
        assert event.val_dice == run["val_dice"][event.epoch - 1]
        clock += run["epoch_s"][event.epoch - 1]  # one at a time: epochs add up
        assert event.time_s == pytest.approx(clock)
    assert [e.spent for e in trace.events] == list(range(1, 16))


def test_trial_epochs_to_target_counted_by_hand():
    table = hand_table()
    experiment = experiment_for(table, "random", seed=2, concurrency=1)
    trace = simulate(experiment, table, epoch_budget=12)
    target = 0.99 * table.best  # only lr 1e-3, batch 8 reaches it, and only at epoch 3
    expected, spent = None, 0
    for trial in trace.trials:  # by hand: walk the trials in order, 3 epochs each
        for value in table.run(trial["params"])["val_dice"]:
            spent += 1
            if expected is None and value >= target:
                expected = spent
    curve_ = replay_one(table, ("random", 1, 2), budget=12)
    hit = first_reaching(curve_, target)
    assert (hit[0] if hit else None) == expected
    # luck-free view: when the best value found first came from the best configuration
    found, best, spent = None, -1.0, 0
    for trial in trace.trials:
        for value in table.run(trial["params"])["val_dice"]:
            spent += 1
            if value > best:
                best = value
                if found is None and table.snap(trial["params"])["lr"] == 1e-3 \
                        and table.snap(trial["params"])["batch_size"] == 8:
                    found = spent
    hit = first_reaching(curve_, target, column=3)
    assert (hit[0] if hit else None) == found
    assert (expected, found) == (3, 1)  # seed 2 draws the best configuration first
    summary = summarise({("random", 1): [curve_]}, table, budget=12)["random@1"]["0.01"]
    assert summary["epochs"] == [3] and summary["incumbent_epochs_q"][1] == 1
    missed = summarise({("random", 1): [curve_[:2]]}, table, budget=12)["random@1"]["0.01"]
    assert missed["epochs"] == [13] and missed["median_censored"]  # a miss: budget + 1
    # made-up curves: rises at 4 and 9 trial-epochs; the target 0.5 is first met at 9
    assert first_reaching([(4, 8.0, 0.3), (9, 20.0, 0.6)], 0.5) == (9, 20.0)
    assert first_reaching([(4, 8.0, 0.3)], 0.5) is None


def test_asha_stops_trials_in_the_replay_and_concurrent_trials_overlap():
    table = hand_table()
    trace = simulate(experiment_for(table, "random_asha", seed=0, concurrency=2), table,
                     max_trials=12)
    assert any(t["epochs"] < 3 for t in trace.trials)  # ASHA stopped some
    assert sum(t["epochs"] for t in trace.trials) == len(trace.events)
    # two at a time: the simulated wall time is less than the sum of the epochs it ran
    total = sum(table.run(trace.trials[e.trial]["params"])["epoch_s"][e.epoch - 1]
                for e in trace.events)
    assert trace.events[-1].time_s < total


def test_simulation_gives_the_same_trials_as_a_real_tuner(ray_session, tmp_path):
    table = hand_table()
    for method in ("tpe_asha", "random"):
        experiment = experiment_for(table, method, seed=2, concurrency=1, trials=6)
        live = ray_replay(experiment, table, tmp_path / method)
        assert live == simulate(experiment, table).trials, method


# ---- the generator ------------------------------------------------------------------------------
def small_settings() -> dict:
    settings = settings_for(tiny=True)
    settings["grid"] = {**settings["grid"], "lr": [1e-3], "optimizer": ["adamw"]}
    settings["folder"] = {"images": 8, "size": 64}
    settings["max_epochs"] = 2
    return settings


def test_generator_resumes_and_respects_its_budget(tmp_path):
    settings, work, out = small_settings(), tmp_path / "work", tmp_path / "table.json.gz"
    nothing = generate(settings, work, out, processes=2, budget_s=1e-9)
    assert nothing["runs"] == 0 and not nothing["complete"]
    done = generate(settings, work, out, processes=2)
    assert done["runs"] == len(jobs(settings)) == 2 and done["complete"]
    progress = (work / "progress.jsonl").read_text()
    again = generate(settings, work, out, processes=2)  # nothing left: nothing trained
    assert again == done and (work / "progress.jsonl").read_text() == progress
    table = load_table(out)
    assert table["settings"] == settings and table["code_version"]
    (run0, run1), = [c["runs"] for c in table["configs"]]
    assert [run0["seed"], run1["seed"]] == [0, 1]
    for run in (run0, run1):
        assert len(run["val_dice"]) == len(run["val_loss"]) == len(run["epoch_s"]) == 2
    with gzip.open(out, "rt") as handle:
        assert json.load(handle)["complete"] is True
    other = {**settings, "max_epochs": 3}
    with pytest.raises(BenchError, match="other generator settings"):
        generate(other, work, out)


# ---- the benchmark's tiny mode ------------------------------------------------------------------
def test_search_bench_tiny_replays_every_method(ray_session, tmp_path):
    from bench.lc_search import SEARCH, run
    from bench.registry import Context

    (tmp_path / "out" / "tiny" / "search").mkdir(parents=True)
    outcome = run(Context(tiny=True, work_dir=tmp_path / "out" / "tiny" / "search"))
    s = SEARCH["tiny"]
    summary = outcome.figures["summary"]
    assert set(summary) == {f"{m}@{c}" for m in s["methods"] for c in s["concurrency"]}
    assert all(len(e["0.01"]["epochs"]) == s["seeds"] for e in summary.values())
    check = outcome.figures["ray_check"]
    assert check["same"] == check["searches"] >= 1
    assert (tmp_path / "out" / "tiny" / "search_curves.png").stat().st_size > 1000
    assert "| shipped |" in outcome.figures["table_md"]
    assert outcome.figures["best_method"] in s["methods"]


# ---- search-live: the replay's top two as real sweeps -------------------------------------------
def test_live_check_takes_the_replays_top_two_and_judges_the_ranking(tmp_path):
    from bench.lc_live import FALLBACK, summarise_live, top_two

    assert top_two(tmp_path / "missing.json") == FALLBACK
    entry = {"0.01": {"epochs_q": [0, 0, 0]}}
    summary = {f"{m}@{c}": {"0.01": {"epochs_q": [1, median, 9]}}
               for m, median in (("random", 300), ("tpe_asha", 40), ("gp", 90),
                                 ("shipped", 40)) for c in (1, 4)}
    summary["random_asha@4"] = entry  # other concurrencies do not rank
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"benchmarks": {"search": {"figures": {"summary": summary}}}}))
    assert top_two(results) == ("tpe_asha", "gp")
    reached = {"tpe_asha": [{"trial_epochs": 10, "total": 30}, {"trial_epochs": None,
                                                                "total": 40}],
               "gp": [{"trial_epochs": 20, "total": 50}, {"trial_epochs": 30, "total": 50}]}
    outcome = summarise_live(reached, "tpe_asha", "gp", 0.5, 0.55, {"seeds": (0, 1),
                                                                    "trials": 4,
                                                                    "concurrency": 1})
    # a miss counts as 51 (one more than the most any sweep spent): medians tpe_asha (10, 51)
    # -> 30.5; gp (20, 30) -> 25: the ranking does not hold
    assert outcome.figures["trial_epochs"]["tpe_asha"] == [10, 51] and outcome.met is False
    assert "does not hold" in outcome.headline
    # Seen live: the ASHA method stopped early (few trial-epochs) and never got there; the
    # other spent more and did. The misses must not make the first look cheaper.
    reached = {"gp": [{"trial_epochs": 134, "total": 292}, {"trial_epochs": 192, "total": 290},
                      {"trial_epochs": None, "total": 290}],
               "random_asha_loss": [{"trial_epochs": None, "total": t} for t in (68, 48, 92)]}
    outcome = summarise_live(reached, "gp", "random_asha_loss", 0.7, 0.75,
                             {"seeds": (0, 1, 2), "trials": 24, "concurrency": 1})
    assert outcome.figures["trial_epochs"]["random_asha_loss"] == [293, 293, 293]
    assert outcome.met is True and "holds" in outcome.headline


@pytest.mark.slow  # two real sweeps: ~70 s on the loaded 2-core machine (make test-all)
def test_search_live_tiny_runs_both_methods_as_real_sweeps(ray_session, tmp_path):
    from bench.lc_live import LIVE, run
    from bench.registry import Context

    outcome = run(Context(tiny=True, work_dir=tmp_path))
    s = LIVE["tiny"]
    for method in (outcome.figures["first"], outcome.figures["second"]):
        runs = outcome.figures["reached"][method]
        assert len(runs) == len(s["seeds"]) and runs[0]["total"] >= s["trials"]
    assert 0 < outcome.figures["target"] <= outcome.figures["best"]
