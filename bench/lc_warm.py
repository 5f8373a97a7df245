"""`warm-start` (issue 25): does a search warm-started from an earlier sweep reach the top-5 %
target in fewer trial-epochs than a cold start? Replayed on the committed learning-curve tables
(bench/lc_replay.py) with the shipped method (experiments/quickstart.yaml, bench/lc_methods.py),
in the shipped mode, at concurrency 2.

For each held-out search seed s (the `search` benchmark's, bench/lc_search.py) and each pair
"target <- source":
- source: the shipped method's search of SOURCE_TRIALS trials (quickstart's 16) on the source
  table, seed s + SOURCE_SEED_OFFSET (another search than the target's own);
- warm: the shipped method on the target table, seed s, its study holding the source's finished
  trials first, chosen and converted by the product's own code (sweep/same_problem.py
  fit_to_space, sweep/warm_start.py told_here), as `search.warm_start` does;
- cold: the same search without them.
Figure: trial-epochs spent on the target until the incumbent (the target search's own best trial
so far: a warm trial has no checkpoint in the target's run) has a held-out mean in the top 5 %
of the target table's configurations (lc_search.thresholds). The source's epochs are not
counted: an earlier sweep, already paid for. Ratio: median(cold) / median(warm) per pair,
geometric mean over the pairs of a kind, paired bootstrap 90 % interval (lc_search.ratio_between:
both sides resampled on the same seeds).

Two kinds of pair. "neighbour": unet_crisp and unet_crop warm-started from unet_thin, the same
model and grid on other cracks. The product refuses that warm start (another data set is
another problem, docs/EXTEND.md); this measures what allowing it would gain. "same": unet_crisp
from another search of unet_crisp, what `search.warm_start` does.
"""
from __future__ import annotations

import math
import multiprocessing

from bench.lc_methods import experiment_for, shipped_name
from bench.lc_replay import Table, key_of, simulate
from bench.lc_search import (
    HELDOUT_SEARCH_SEEDS,
    median_time,
    ratio_between,
    tables_for,
    thresholds,
)
from bench.registry import Context, Outcome

PAIRS = {"neighbour": (("unet_crisp", "unet_thin"), ("unet_crop", "unet_thin")),
         "same": (("unet_crisp", "unet_crisp"),)}
SOURCE_TRIALS = 16  # quickstart's trials: the earlier sweep a user would have
SOURCE_SEED_OFFSET = 500  # the source search is another search than the target's
CONCURRENCY = 2
SETUP = {"full": dict(seeds=50, horizon=150, source_trials=SOURCE_TRIALS, processes=2),
         "tiny": dict(seeds=2, horizon=4, source_trials=4, processes=1)}
TARGET = "top5"
GOAL = 1.0  # met when warm-starting from a neighbour beats a cold start, 90 % CI above 1


# ---- one search ---------------------------------------------------------------------------------
def source_trials(table: Table, method: str, seed: int, trials: int) -> list:
    """The finished study trials of one source search (an in-memory study)."""
    import optuna

    experiment = experiment_for(table, method, seed, CONCURRENCY, trials=trials)
    storage = optuna.storages.InMemoryStorage()
    simulate(experiment, table, max_trials=trials, storage=storage)
    study = optuna.load_study(study_name=experiment.name, storage=storage)
    return study.get_trials(deepcopy=True)


def warm_study(experiment, trials: list):
    """An in-memory study for ``experiment`` holding the source ``trials`` the product would
    tell (sweep/warm_start.py's rule and conversion); returns (storage, how many)."""
    import optuna

    from sweep.same_problem import fit_to_space
    from sweep.warm_start import left_out, told_here

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name=experiment.name, storage=storage,
                                direction="maximize")
    fixed = experiment.train.to_dict()
    told = []
    for trial in trials:
        point = None if left_out(trial) else fit_to_space(trial.params, experiment.space,
                                                          fixed)[0]
        if point is not None:
            told.append(told_here(trial, point, experiment, "source"))
    study.add_trials(told)
    return storage, len(told)


def time_to_target(table: Table, method: str, seed: int, horizon_epochs: int,
                   warm: list | None = None) -> int | None:
    """Trial-epochs the target search spent until its incumbent's held-out mean reached the
    top-5 % threshold (None: not within the horizon)."""
    experiment = experiment_for(table, method, seed, CONCURRENCY)
    storage = warm_study(experiment, warm)[0] if warm else None
    need = thresholds(table)[TARGET]
    best, hit = [-1.0], [None]

    def follow(trace) -> bool:
        event = trace.events[-1]
        if event.val_dice > best[0]:
            best[0] = event.val_dice
            key = key_of(table.snap(trace.trials[event.trial]["params"]))
            if table.heldout[key] >= need:
                hit[0] = event.spent
        return hit[0] is not None

    simulate(experiment, table, epoch_budget=horizon_epochs, until=follow, storage=storage)
    return hit[0]


# ---- many searches ------------------------------------------------------------------------------
_TABLES: dict[str, Table] = {}


def _job(job: tuple) -> tuple:
    """One search: ("cold", target, seed, ...) -> (time, 0); ("warm", target, source, seed,
    ...) -> (time, trials told)."""
    kind, target, *middle, method, seed, s = job
    table = _TABLES[target]
    horizon = s["horizon"] * table.max_epochs
    if kind == "cold":
        return time_to_target(table, method, seed, horizon), 0
    told = source_trials(_TABLES[middle[0]], method, seed + SOURCE_SEED_OFFSET,
                         s["source_trials"])
    return (time_to_target(table, method, seed, horizon, warm=told),
            sum(t.state.name in ("COMPLETE", "PRUNED") for t in told))


def replay_pairs(tables: dict[str, Table], method: str, seeds, s: dict) -> dict:
    """{pair label: {"cold": [times], "warm": [times], "told": [counts]}}, over processes. A
    target's cold searches serve every pair of that target (the same seeded searches)."""
    pairs = [pair for kind in PAIRS for pair in PAIRS[kind]]
    targets = list(dict.fromkeys(target for target, _ in pairs))
    jobs = [("cold", target, method, seed, s) for target in targets for seed in seeds]
    jobs += [("warm", target, source, method, seed, s) for target, source in pairs
             for seed in seeds]
    _TABLES.clear()
    _TABLES.update(tables)
    if s["processes"] > 1:
        with multiprocessing.get_context("fork").Pool(s["processes"]) as pool:  # inherit tables
            results = pool.map(_job, jobs)
    else:
        results = [_job(job) for job in jobs]
    done = {(*job[:-3], job[-2]): result for job, result in zip(jobs, results)}  # no method, s
    return {f"{target}<-{source}": {
        "cold": [done["cold", target, seed][0] for seed in seeds],
        "warm": [done["warm", target, source, seed][0] for seed in seeds],
        "told": [done["warm", target, source, seed][1] for seed in seeds]}
        for target, source in pairs}


def summary_of(times: dict, horizon: int) -> dict:
    """The search benchmark's summary shape ({"pair/side@2": {"top5": {"times", ...}}}), so its
    paired bootstrap reads it."""
    summary = {}
    for pair, entry in times.items():
        for side in ("cold", "warm"):
            values = entry[side]
            summary[f"{pair}/{side}@{CONCURRENCY}"] = {TARGET: {
                "times": values, "reached": sum(t is not None for t in values),
                "median": median_time(values, horizon)}}
    return summary


def paired_ratio(summary: dict, pairs: list[str], horizon: int) -> dict:
    """median(cold) / median(warm), geometric mean over ``pairs``, with the search benchmark's
    paired bootstrap; nan when neither side of any pair reached the target (no ratio to draw)."""
    cells = [f"{pair}/{side}@{CONCURRENCY}" for pair in pairs for side in ("cold", "warm")]
    if not any(summary[cell][TARGET]["reached"] for cell in cells):
        return {"ratio": math.nan, "ci90": [math.nan, math.nan], "cells": len(pairs)}
    return ratio_between(summary, pairs, "cold", "warm", (CONCURRENCY,), TARGET, horizon)


# ---- the benchmark ------------------------------------------------------------------------------
def run(ctx: Context) -> Outcome:
    s = SETUP["tiny" if ctx.tiny else "full"]
    seeds = HELDOUT_SEARCH_SEEDS[:ctx.repeats or s["seeds"]]
    names = tuple(dict.fromkeys(n for pairs in PAIRS.values() for pair in pairs for n in pair))
    tables = tables_for(ctx, names)
    method = shipped_name()
    times = replay_pairs(tables, method, seeds, s)
    horizon = s["horizon"] * max(t.max_epochs for t in tables.values())
    summary = summary_of(times, horizon)
    ratios = {kind: paired_ratio(summary, [f"{t}<-{src}" for t, src in PAIRS[kind]], horizon)
              for kind in PAIRS}
    neighbour, same = ratios["neighbour"], ratios["same"]
    headline = (f"warm-started from a {s['source_trials']}-trial search of unet_thin, the "
                f"shipped {method} reaches the top-5 % target on unet_crisp/unet_crop in "
                f"{neighbour['ratio']:.2f}x fewer trial-epochs than cold [90 % CI "
                f"{neighbour['ci90'][0]:.2f}-{neighbour['ci90'][1]:.2f}]; from a search of the "
                f"same problem {same['ratio']:.2f}x [{same['ci90'][0]:.2f}-"
                f"{same['ci90'][1]:.2f}]")
    low = neighbour["ci90"][0]
    return Outcome(
        ratio=neighbour["ratio"], headline=headline,
        met=None if math.isnan(low) else bool(low > GOAL),
        figures={"method": method, "seeds": list(seeds), "concurrency": CONCURRENCY,
                 "source_trials": s["source_trials"], "horizon_trainings": s["horizon"],
                 "thresholds": {n: thresholds(t)[TARGET] for n, t in tables.items()},
                 "ratios": ratios, "pairs": {pair: {
                     "median_cold": summary[f"{pair}/cold@{CONCURRENCY}"][TARGET]["median"],
                     "median_warm": summary[f"{pair}/warm@{CONCURRENCY}"][TARGET]["median"],
                     **entry} for pair, entry in times.items()}},
        notes=["Trial-epochs counted on the target only (the source sweep was paid for "
               "earlier); the incumbent is the target search's own best trial.",
               "neighbour pairs measure a warm start the product refuses (another data set is "
               "another problem, docs/EXTEND.md): what allowing it would gain.",
               f"Held-out search seeds {seeds[0]}..{seeds[-1]}; source searches seeded "
               f"+{SOURCE_SEED_OFFSET}."])
