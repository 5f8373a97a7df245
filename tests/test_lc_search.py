"""The learning-curve benchmark (issue 14): the table generator resumes; a replayed search reads
the table's values through the product's searcher and ASHA; trial-epochs to a target are
counted right on a hand-made table; the simulated Tune loop gives the same trials as a real
Tuner; the `search` benchmark's tiny mode runs end to end."""
from __future__ import annotations

import gzip
import json
import math

import pytest

from bench.child import BenchError
from bench.lc_methods import experiment_for
from bench.lc_replay import Table, key_of, ray_replay, simulate
from bench.lc_search import (
    hit_time,
    incumbent_path,
    log_ratio,
    median_time,
    ratio_between,
    score_at,
    thresholds,
)
from bench.lc_table import generate, jobs, load_table, problem_settings

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


def held_out_table() -> Table:
    """Four lrs x two batch sizes, 4 seeds: seeds 0-1 (seen) make lr 1e-2 look best, seeds 2-3
    (held out) say lr 1e-3 is; 3 epochs of 1 s."""
    grid = {"lr": [1e-5, 1e-4, 1e-3, 1e-2], "batch_size": [4, 8]}
    seen = {1e-5: 0.1, 1e-4: 0.3, 1e-3: 0.6, 1e-2: 0.7}
    held = {1e-5: 0.1, 1e-4: 0.3, 1e-3: 0.8, 1e-2: 0.2}
    configs = []
    for lr in grid["lr"]:
        for batch in grid["batch_size"]:
            runs = []
            for s in range(4):
                top = (seen if s < 2 else held)[lr] - (0.05 if batch == 4 else 0.0)
                dice = [round(top * e / 3, 6) for e in (1, 2, 3)]
                runs.append({"seed": s, "val_dice": dice, "val_loss": [1 - v for v in dice],
                             "epoch_s": [1.0, 1.0, 1.0]})
            configs.append({"params": {"lr": lr, "batch_size": batch}, "runs": runs})
    return Table({"format": 1, "code_version": "test", "configs": configs,
                  "settings": {"problem": "test", "grid": grid, "max_epochs": 3,
                               "seeds": [0, 1, 2, 3]}})


def test_a_search_sees_seeds_0_1_and_is_scored_on_seeds_2_3():
    table = held_out_table()
    assert table.seen_seeds == [0, 1] and table.heldout_seeds == [2, 3] and table.seeds == 2
    assert table.run({"lr": 1e-2, "batch_size": 8})["val_dice"][-1] == pytest.approx(0.7)
    assert table.best_key == key_of({"lr": 1e-2, "batch_size": 8})  # by the seen seeds
    assert max(table.heldout, key=table.heldout.get) == key_of({"lr": 1e-3, "batch_size": 8})
    # the top 5 % of 8 held-out means: above the 7th, at most the best
    targets = thresholds(table)
    assert 0.75 < targets["top5"] <= targets["top1"] <= 0.8


def test_incumbent_path_hit_time_and_regret_by_hand():
    table = held_out_table()
    path = incumbent_path(table, "random", seed=5, concurrency=1, horizon_epochs=24)
    trace = simulate(experiment_for(table, "random", 5, 1), table, epoch_budget=24)
    # by hand: walk the reported epochs; the incumbent is the best seen val_dice so far
    expected, best = [], -1.0
    for event in trace.events:
        if event.val_dice > best:
            best = event.val_dice
            score = table.heldout[key_of(table.snap(trace.trials[event.trial]["params"]))]
            if not expected or expected[-1][1] != score:
                expected.append((event.spent, score))
    assert path == expected[:len(path)] and path
    top = thresholds(table)["top5"]
    hit = hit_time(path, top)
    assert hit == next((s for s, v in expected if v >= top), None)
    # made-up path: the incumbent changes at 3 and 9 trial-epochs
    made_up = [(3, 0.2), (9, 0.8)]
    assert hit_time(made_up, 0.5) == 9 and hit_time(made_up, 0.9) is None
    assert [score_at(made_up, s) for s in (2, 3, 8, 9, 50)] == [0.0, 0.2, 0.2, 0.8, 0.8]


def test_medians_count_misses_as_never_and_ratios_are_paired():
    assert median_time([4, None, 2, 8], 100) == 6.0
    assert median_time([None, None, 3], 100) == math.inf  # fewer than half reached it
    assert log_ratio(math.inf, 4) == math.inf and math.isnan(log_ratio(math.inf, math.inf))
    # method b needs half of a's trial-epochs on every seed: ratio 2, and every bootstrap
    # resample of the (paired) seeds says so too
    a = [10, 20, 30, 40, 50, 60]
    summary = {"t/a@1": {"top5": {"times": a}}, "t/b@1": {"top5": {"times": [v / 2 for v in a]}}}
    result = ratio_between(summary, ["t"], "a", "b", [1], "top5", 100)
    assert result["ratio"] == pytest.approx(2.0) and result["ci90"] == [2.0, 2.0]
    assert result["cells"] == 1


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


def test_shipped_mode_gives_the_same_trials_however_long_epochs_take():
    """Reproducible mode (OrderedASHA, held-back tells) in the replay: epochs lasting 0.2-5x
    their time change nothing, for model-based samplers at concurrency 2 and 4; async mode
    does change them (the check can fail)."""
    table = held_out_table()
    for method in ("tpe_asha", "bohb"):
        for concurrency in (2, 4):
            experiment = experiment_for(table, method, seed=1, concurrency=concurrency,
                                        trials=20)
            calm = simulate(experiment, table).trials
            assert any(t["epochs"] < 3 for t in calm)  # ASHA stopped some
            for noise in (1, 2):
                assert simulate(experiment, table, time_noise=noise).trials == calm, method
    differ = 0
    for seed in range(4):
        experiment = experiment_for(table, "tpe_asha", seed, 4, trials=20, mode="async")
        differ += simulate(experiment, table, time_noise=3).trials != simulate(
            experiment, table).trials
    assert differ >= 1


def test_simulation_gives_the_same_trials_as_a_real_tuner(ray_session, tmp_path):
    """The shipped mode at concurrency 2 through a real Tuner (trials paused at rungs and
    resumed from checkpoints) and through the simulation: identical trials."""
    table = held_out_table()
    for method, trials in (("tpe_asha", 14), ("gp", 10), ("bohb", 14)):
        experiment = experiment_for(table, method, seed=2, concurrency=2, trials=trials)
        live = ray_replay(experiment, table, tmp_path / method)
        simulated = simulate(experiment, table).trials
        assert live == simulated, method
        assert len(live) == trials
        if method != "gp":  # ASHA paused trials at rungs and stopped some
            assert any(t["epochs"] < 3 for t in live), method


# ---- the generator ------------------------------------------------------------------------------
def small_settings() -> dict:
    settings = problem_settings("tiny")
    settings["grid"] = {**settings["grid"], "lr": [1e-3], "optimizer": ["adamw"]}
    settings["folder"] = {"images": 8, "size": 64}
    settings["max_epochs"] = 2
    settings["seeds"] = [0, 1]
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
    # a fresh clone: no progress file, the committed table resumes it and nothing retrains
    (work / "progress.jsonl").unlink()
    assert generate(settings, work, out, processes=2, budget_s=1e-9) == done
    assert len((work / "progress.jsonl").read_text().splitlines()) == 3  # header + 2 runs
    other = {**settings, "max_epochs": 3}
    with pytest.raises(BenchError, match="other generator settings"):
        generate(other, work, out)


# ---- the benchmarks' tiny mode ----------------------------------------------------------------
def test_search_benchmarks_tiny_replay_every_method_in_the_shipped_mode(ray_session, tmp_path):
    from bench.lc_methods import METHODS
    from bench.lc_search import DEVELOPMENT_TABLES, HELDOUT_TABLES, SETUP, run, run_development
    from bench.registry import Context

    work = tmp_path / "out" / "tiny" / "search"
    work.mkdir(parents=True)
    dev = run_development(Context(tiny=True, work_dir=work))
    s = SETUP["tiny"]
    assert {r["method"] for r in dev.figures["ranking"]} == set(METHODS)
    assert dev.figures["mode"] == "reproducible" and dev.figures["best"] in METHODS
    assert all(e["seeds"] == s["seeds"] for e in dev.figures["summary"].values())
    held = run(Context(tiny=True, work_dir=work))
    figures = held.figures["heldout"]
    for key in ("tables", "heldout_tables", "seeds", "ratio_vs_random", "ratio_vs_random_ci90",
                "ratio_vs_random_asha", "modes", "concurrency", "shipped"):
        assert key in figures, key
    assert "reproducible" in figures["modes"] and figures["concurrency"] == list(s["concurrency"])
    assert figures["seeds"] == s["seeds"] and figures["heldout_tables"] == len(HELDOUT_TABLES)
    assert figures["tables"] == len(DEVELOPMENT_TABLES) + len(HELDOUT_TABLES)
    assert figures["missing_tables"] == {}  # tiny mode makes its one table for every name
    check = held.figures["ray_check"]
    assert check["same"] == check["searches"] >= 1
    assert (tmp_path / "out" / "tiny" / "search_curves.png").stat().st_size > 1000


# ---- search-live: the replay's top two as real sweeps -------------------------------------------
def test_live_check_takes_the_replays_top_two_and_judges_the_ranking(tmp_path):
    from bench.lc_live import FALLBACK, summarise_live, top_two

    assert top_two(tmp_path / "missing.json") == FALLBACK
    ranking = [{"method": m} for m in ("tpe_asha", "gp", "random")]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"benchmarks": {"search-dev": {"figures": {
        "ranking": ranking}}}}))
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
