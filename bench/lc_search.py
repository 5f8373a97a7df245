"""The search benchmarks (issue 21): search methods replayed on learning-curve tables of several
problems (bench/lc_table.py PROBLEMS) through the product's searcher and scheduler in the
shipped mode (reproducible: OrderedASHA, held-back tells; bench/lc_replay.py), and scored on
what a user gets: the configuration a search would return (its incumbent, by the seeds it saw)
scored by the mean of seeds it never saw.

Selection hygiene: `search-dev` ranks the methods on the DEVELOPMENT tables with the development
search seeds and names the best; that is what experiments/*.yaml ship. `search` then reports the
shipped method against the baselines on the HELDOUT tables and search seeds, fixed below before
any of them was scored. The split is written here, in code, so a later change of it shows in
the history.

Figures per (table, method, concurrency): trial-epochs until the incumbent's held-out mean is in
the top 5 % (and 1 %) of the table's configurations by held-out mean; simple regret (best held-out
mean - the incumbent's) at budgets from quickstart's 16 full trainings to 60; ratios of median
trial-epochs between methods with paired bootstrap 90 % intervals (both methods resampled on the
same sampler seeds). A search runs until it reached both targets and 60 trainings, or HORIZON
trainings; the horizon is long enough that every baseline's median is reached (checked: a median
beyond it is reported as a miss, never as a number).
"""
from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from bench.child import REPO_ROOT, BenchError
from bench.lc_methods import METHODS, experiment_for, shipped_name
from bench.lc_replay import Table, key_of, mean_run, ray_replay, simulate
from bench.lc_table import PROBLEMS, generate, load_table, problem_settings, problem_table_file
from bench.registry import Context, Outcome

# ---- the split (fixed before the held-out tables were scored) ---------------------------------
# unet_crop was first named for development; the default was chosen on unet_thin alone, before
# unet_crop's table existed, so it joined the held-out side unseen (2026-12-03).
DEVELOPMENT_TABLES = ("unet_thin",)
HELDOUT_TABLES = ("unet_crisp", "unet_crop")
DEVELOPMENT_SEARCH_SEEDS = tuple(range(0, 50))
HELDOUT_SEARCH_SEEDS = tuple(range(1000, 1050))
assert set(DEVELOPMENT_TABLES) | set(HELDOUT_TABLES) == set(PROBLEMS)
assert not set(DEVELOPMENT_TABLES) & set(HELDOUT_TABLES)

TARGETS = {"top5": 0.95, "top1": 0.99}  # quantiles of the held-out means
QUICKSTART_TRAININGS = 16  # quickstart's 16 trials, as full trainings
ANYTIME_TRAININGS = (16, 24, 32, 48, 60)
HORIZON_TRAININGS = 150
BOOTSTRAP = 2000
BASELINE, STOPPING_BASELINE = "random", "random_asha"
GOALS = {"ratio_vs_random": 3.0, "ratio_vs_random_ci90_lo": 2.0, "ratio_vs_random_asha": 1.25}
# GP is not replayed at full size (only in tiny mode and the real-Tuner check): Optuna's
# GPSampler took 1-2 s per suggestion at 40 trials here; one search of 150 trainings without
# stopping still ran after 13 CPU-minutes, and none of 50 GP + ASHA searches had ended after 5.
LIMITED = {"gp": {"seeds": 0}, "gp_asha": {"seeds": 0}}

DEV_METHODS = tuple(METHODS)
# Held out: the goal's baselines at every concurrency; two model-based methods for context at
# concurrency 2 only (unless shipped: the shipped method runs everywhere).
HELDOUT_METHODS = ("random", "random_asha", "tpe_asha", "bohb")
HELDOUT_CONTEXT = {"tpe_asha": {"concurrency": (2,)}, "bohb": {"concurrency": (2,)}}
SETUP = {
    "full": dict(concurrency=(1, 2, 4), dev_concurrency=(2,), seeds=50, processes=2,
                 horizon=HORIZON_TRAININGS, ray_methods=("tpe_asha", "gp", "bohb"),
                 ray_trials=16, limited=LIMITED),
    "tiny": dict(concurrency=(1, 2), dev_concurrency=(2,), seeds=2, processes=1, horizon=4,
                 ray_methods=("tpe_asha",), ray_trials=4, limited={}),
}
PLOT_FILE = REPO_ROOT / "bench" / "search_curves.png"


# ---- tables -----------------------------------------------------------------------------------
def available_tables(ctx: Context, names: tuple[str, ...]) -> tuple[dict[str, Table], dict]:
    """The tables of ``names`` that are committed and complete, and why each other one is not
    (a development table still being made is left out of the ranking, said in its notes)."""
    tables, missing = {}, {}
    for name in names:
        try:
            tables.update(tables_for(ctx, (name,)))
        except BenchError as error:
            missing[name] = str(error)
    if not tables:
        raise BenchError("; ".join(missing.values()))
    return tables, missing


def tables_for(ctx: Context, names: tuple[str, ...]) -> dict[str, Table]:
    """The committed tables by problem name; tiny mode makes one tiny table (under a minute)
    and uses it for every name."""
    if ctx.tiny:
        path = ctx.work_dir / "tiny_table.json.gz"
        if not path.exists():
            generate(problem_settings("tiny"), ctx.work_dir / "lc_table", path, processes=2)
        tiny = Table(load_table(path))
        return {name: tiny for name in names}
    tables = {}
    for name in names:
        path = problem_table_file(name)
        if not path.exists():
            raise BenchError(f"{path.relative_to(REPO_ROOT)} is missing: make it with "
                             f"`python -m bench.lc_table --problem {name}` (~1 h on 2 cores)")
        data = load_table(path)
        if not data.get("complete"):
            raise BenchError(f"{path.relative_to(REPO_ROOT)} holds {data['runs']} runs of "
                             f"{len(data['configs'])} configurations, not all: finish it with "
                             f"`python -m bench.lc_table --problem {name}` (it resumes)")
        tables[name] = Table(data)
    return tables


def thresholds(table: Table) -> dict[str, float]:
    """Held-out means a returned configuration must reach: the TARGETS quantiles."""
    import numpy as np

    values = np.array(sorted(table.heldout.values()))
    return {name: float(np.quantile(values, q)) for name, q in TARGETS.items()}


# ---- one search -------------------------------------------------------------------------------
def incumbent_path(table: Table, method: str, seed: int, concurrency: int, horizon_epochs: int,
                   mode: str = "reproducible") -> list[tuple[int, float]]:
    """One search's incumbent over time: (trial-epochs spent, held-out mean of the configuration
    it would return), a row each time the incumbent changes. The incumbent is the trial with the
    best val_dice reported so far (seen seeds), as the sweep's report names it. The search ends
    at the horizon, or once it has reached every target and 60 trainings."""
    targets = thresholds(table)
    need = max(targets.values())
    anytime_end = max(ANYTIME_TRAININGS) * table.max_epochs
    path: list[tuple[int, float]] = []
    best = [-1.0]

    def follow(trace) -> bool:
        event = trace.events[-1]
        if event.val_dice > best[0]:
            best[0] = event.val_dice
            key = key_of(table.snap(trace.trials[event.trial]["params"]))
            score = table.heldout[key]
            if not path or path[-1][1] != score:
                path.append((event.spent, score))
        reached = any(score >= need for _, score in path)
        return reached and event.spent >= anytime_end

    simulate(experiment_for(table, method, seed, concurrency, mode=mode), table,
             epoch_budget=horizon_epochs, until=follow)
    return path


def hit_time(path: list[tuple[int, float]], threshold: float) -> int | None:
    """Trial-epochs until the incumbent's held-out mean first reached ``threshold``."""
    return next((spent for spent, score in path if score >= threshold), None)


def score_at(path: list[tuple[int, float]], spent: int) -> float:
    """The held-out mean of the incumbent after ``spent`` trial-epochs (0 before the first)."""
    score = 0.0
    for when, value in path:
        if when > spent:
            break
        score = value
    return score


# ---- many searches ----------------------------------------------------------------------------
_TABLES: dict[str, Table] = {}


def _replay(job: tuple) -> list:
    name, method, concurrency, seed, horizon = job
    table = _TABLES[name]
    return incumbent_path(table, method, seed, concurrency, horizon * table.max_epochs)


def replay_all(tables: dict[str, Table], methods, concurrencies, seeds, s: dict) -> dict:
    """{(table, method, concurrency): [incumbent path per seed]}, spread over processes."""
    jobs = []
    for name in tables:
        for method in methods:
            limit = s["limited"].get(method, {})
            for concurrency in limit.get("concurrency", concurrencies):
                if concurrency not in concurrencies:
                    continue
                for seed in seeds[:limit.get("seeds", len(seeds))]:
                    jobs.append((name, method, concurrency, seed, s["horizon"]))

    _TABLES.clear()
    _TABLES.update(tables)
    # GP jobs first, so the slowest do not come last; a progress bar on stderr (many minutes)
    order = sorted(range(len(jobs)), key=lambda i: not jobs[i][1].startswith("gp"))
    return run_jobs(jobs, order, _replay, s["processes"], "searches replayed")


def run_jobs(jobs: list[tuple], order: list[int], replay, processes: int, desc: str) -> dict:
    """{job[:3]: [replay(job) per seed]}: the jobs replayed in ``order`` over ``processes``
    forked workers (they inherit the tables the caller's module holds), with a progress bar."""
    from tqdm import tqdm

    progress = tqdm(total=len(jobs), desc=desc, unit="search", mininterval=10)
    paths: list = [None] * len(jobs)
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            for i, result in zip(order, pool.imap(replay, [jobs[i] for i in order])):
                paths[i] = result
                progress.update()
    else:
        for i in order:
            paths[i] = replay(jobs[i])
            progress.update()
    progress.close()
    out: dict = {}
    for job, path in zip(jobs, paths):
        out.setdefault(job[:3], []).append(path)
    return out


# ---- statistics -------------------------------------------------------------------------------
def median_time(times: list, horizon: int) -> float:
    """Median trial-epochs to a target, misses (None) counted as never: every search runs to the
    same horizon, so the survival (Kaplan-Meier) estimate is the empirical one; inf when fewer
    than half reached it."""
    values = sorted(math.inf if t is None else t for t in times)
    middle = values[(len(values) - 1) // 2], values[len(values) // 2]
    return (middle[0] + middle[1]) / 2 if all(math.isfinite(m) for m in middle) else math.inf


def summarise(paths: dict, tables: dict[str, Table], horizon: int) -> dict:
    """Per "table/method@concurrency": hit times and medians per target, regret per budget."""
    summary = {}
    for (name, method, concurrency), runs in paths.items():
        table = tables[name]
        best = max(table.heldout.values())
        entry = {"seeds": len(runs)}
        for target, threshold in thresholds(table).items():
            times = [hit_time(p, threshold) for p in runs]
            entry[target] = {"times": times, "reached": sum(t is not None for t in times),
                             "median": median_time(times, horizon * table.max_epochs)}
        entry["regret"] = {str(b): [round(best - score_at(p, b * table.max_epochs), 5)
                                    for p in runs] for b in ANYTIME_TRAININGS}
        summary[f"{name}/{method}@{concurrency}"] = entry
    return summary


def ratio_between(summary: dict, names, slow: str, fast: str, concurrencies, target: str,
                  horizon: int) -> dict:
    """The geometric mean over tables and concurrencies of median(slow)/median(fast), with a
    bootstrap interval of the same geometric mean (seeds resampled per table, paired)."""
    import numpy as np

    cells = [(n, c) for n in names for c in concurrencies
             if f"{n}/{slow}@{c}" in summary and f"{n}/{fast}@{c}" in summary]
    if not cells:
        return {"ratio": math.nan, "ci90": [math.nan, math.nan], "cells": 0}
    rng = np.random.default_rng(1)
    point, draws = [], np.zeros((BOOTSTRAP, len(cells)))
    for j, (n, c) in enumerate(cells):
        a = summary[f"{n}/{slow}@{c}"][target]["times"]
        b = summary[f"{n}/{fast}@{c}"][target]["times"]
        point.append(log_ratio(median_time(a, horizon), median_time(b, horizon)))
        for i in range(BOOTSTRAP):
            pick = rng.integers(0, len(a), len(a))
            draws[i, j] = log_ratio(median_time([a[k] for k in pick], horizon),
                                    median_time([b[k] for k in pick], horizon))
    with warnings.catch_warnings():  # a resample where no cell has a finite ratio: nan
        warnings.simplefilter("ignore", RuntimeWarning)
        geo = np.exp(np.nanmean(draws, axis=1))
        low, high = np.nanpercentile(geo, [5, 95])
    return {"ratio": round(math.exp(sum(point) / len(point)), 3),
            "ci90": [round(float(low), 3), round(float(high), 3)], "cells": len(cells)}


def log_ratio(slow: float, fast: float) -> float:
    """log(slow / fast) of two medians, either possibly inf (never reached): nan when both."""
    if math.isinf(slow) and math.isinf(fast):
        return math.nan
    if math.isinf(slow):
        return math.inf
    if math.isinf(fast):
        return -math.inf
    return math.log(slow / fast)


def regret_at(summary: dict, names, method: str, concurrencies, trainings: int) -> float:
    """Median simple regret at ``trainings`` full trainings, pooled over tables and
    concurrencies."""
    import numpy as np

    values = [v for n in names for c in concurrencies
              for v in summary.get(f"{n}/{method}@{c}", {}).get("regret", {}).get(
                  str(trainings), [])]
    return round(float(np.median(values)), 5) if values else math.nan


def rank_methods(summary: dict, names, methods, concurrencies, horizon: int) -> list[dict]:
    """Methods by median trial-epochs to the top-5 % target (geometric mean over tables and
    concurrencies; never reached by half the seeds: inf), fewest first; ties by median regret at
    quickstart's budget. Each row also gives the ratio to random search's median."""
    rows = []
    for method in methods:
        cells = [summary[f"{n}/{method}@{c}"] for n in names for c in concurrencies
                 if f"{n}/{method}@{c}" in summary]
        if not cells:
            continue
        medians = [cell["top5"]["median"] for cell in cells]
        typical = (math.inf if any(math.isinf(m) for m in medians)
                   else math.exp(sum(math.log(m) for m in medians) / len(medians)))
        vs = ratio_between(summary, names, BASELINE, method, concurrencies, "top5", horizon)
        rows.append({"method": method, "top5_median": round(typical, 1),
                     "reached": [sum(cell["top5"]["reached"] for cell in cells),
                                 sum(cell["seeds"] for cell in cells)],
                     "ratio_vs_random": vs["ratio"], "ci90": vs["ci90"],
                     "regret_16": regret_at(summary, names, method, concurrencies,
                                            QUICKSTART_TRAININGS)})
    return sorted(rows, key=lambda r: (r["top5_median"], r["regret_16"]))


def spearman(a, b) -> float:
    import numpy as np
    import pandas as pd

    ranks_a, ranks_b = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def rung_signal(table: Table) -> dict:
    """How well what ASHA compares at an epoch (the seen seeds' mean val_dice, or -val_loss)
    ranks configurations by their held-out score: Spearman per metric and epoch. A rung metric
    near 0 here prunes at random."""
    import numpy as np

    keys = list(table.configs)
    held = [table.heldout[k] for k in keys]
    runs = [mean_run(table.seen_runs(table.configs[k])) for k in keys]
    return {metric: {str(e): round(spearman([sign * r[metric][e - 1] for r in runs], held), 3)
                     for e in range(1, table.max_epochs + 1)}
            for metric, sign in (("val_dice", 1.0), ("val_loss", -1.0))} | {
        "seen_final": round(spearman([table.scores[k] for k in keys], held), 3),
        "held_zero_share": round(float(np.mean(np.array(held) == 0)), 3)}


# ---- the two benchmarks -----------------------------------------------------------------------
def run_development(ctx: Context) -> Outcome:
    """`search-dev`: every method on the development tables and seeds; names the best."""
    s = SETUP["tiny" if ctx.tiny else "full"]
    tables, missing = available_tables(ctx, DEVELOPMENT_TABLES)
    seeds = DEVELOPMENT_SEARCH_SEEDS[:s["seeds"]]
    began = time.perf_counter()
    paths = replay_all(tables, DEV_METHODS, s["dev_concurrency"], seeds, s)
    summary = summarise(paths, tables, s["horizon"])
    ranking = rank_methods(summary, list(tables), DEV_METHODS, s["dev_concurrency"],
                           s["horizon"])
    best = ranking[0]["method"]
    shipped = shipped_name()
    lines = ["| method | median trial-epochs to top 5 % | seeds that got there | x fewer than "
             "random [90 % CI] | median regret at 16 trainings |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['top5_median']:g} | {r['reached'][0]}/{r['reached'][1]} | "
              f"{r['ratio_vs_random']:.2f} [{r['ci90'][0]:.2f}, {r['ci90'][1]:.2f}] | "
              f"{r['regret_16']:.4f} |" for r in ranking]
    return Outcome(
        ratio=ranking[0]["ratio_vs_random"], met=None,
        headline=f"development split: {best} ranks first (median {ranking[0]['top5_median']:g} "
                 f"trial-epochs to the top-5 % target, {ranking[0]['ratio_vs_random']:.2f}x "
                 f"fewer than random); shipped: {shipped}",
        figures={"tables": list(tables), "missing_tables": missing,
                 "search_seeds": list(seeds),
                 "concurrency": list(s["dev_concurrency"]), "mode": "reproducible",
                 "ranking": ranking, "best": best, "shipped": shipped,
                 "rung_signal": {n: rung_signal(t) for n, t in tables.items()},
                 "summary": compact(summary), "replay_s": round(time.perf_counter() - began, 1),
                 "table_md": "\n".join(lines) + "\n"},
        notes=[f"{len(seeds)} search seeds per method (fewer: {limited_seeds(s)}), "
               f"concurrency {s['dev_concurrency']}, reproducible mode, horizon {s['horizon']} "
               f"trainings; tables {', '.join(tables)}"
               + "".join(f"; left out: {m}" for m in missing.values()),
               "ranking:\n" + "\n".join(lines)])


def run(ctx: Context) -> Outcome:
    """`search`: the shipped method against the baselines on the held-out tables and seeds."""
    s = SETUP["tiny" if ctx.tiny else "full"]
    shipped = shipped_name()
    methods = tuple(dict.fromkeys((*HELDOUT_METHODS, shipped)))
    # A held-out table still being made is left out and named (`missing_tables`), never guessed.
    tables, missing = available_tables(ctx, HELDOUT_TABLES)
    seeds = HELDOUT_SEARCH_SEEDS[:s["seeds"]]
    limited = {m: v for m, v in {**s["limited"], **HELDOUT_CONTEXT}.items() if m != shipped}
    began = time.perf_counter()
    paths = replay_all(tables, methods, s["concurrency"], seeds, {**s, "limited": limited})
    replay_s = time.perf_counter() - began
    summary = summarise(paths, tables, s["horizon"])
    began = time.perf_counter()
    agreement = ray_check(next(iter(tables.values())), s, ctx.work_dir)
    ray_s = time.perf_counter() - began
    plot = ctx.work_dir.parent / "search_curves.png" if ctx.tiny else PLOT_FILE
    draw_regret(summary, tables, methods, s["concurrency"], plot, shipped)
    return heldout_outcome(summary, tables, methods, shipped, seeds, s, agreement, plot,
                           {"replay_s": round(replay_s, 1), "ray_check_s": round(ray_s, 1)},
                           missing)


def per_concurrency(summary: dict, names, methods, conc) -> dict:
    """Each table's medians and regret by concurrency, keyed "<table>/<method>"."""
    def cell(key: str) -> dict:
        entry = summary[key]
        regret = entry.get("regret")
        return {"top5_median": entry["top5"]["median"], "top5_reached": entry["top5"]["reached"],
                "top1_median": entry["top1"]["median"],
                "regret_16": (round(float(statistics.median(regret["16"])), 5) if regret
                              else entry["regret_q"]["16"][1])}  # a compact summary: its median
    return {str(c): {f"{n}/{m}": cell(f"{n}/{m}@{c}") for n in names for m in methods
                     if f"{n}/{m}@{c}" in summary} for c in conc}


def per_table(summary: dict, names, shipped: str, conc, horizon: int) -> dict:
    """The shipped method's ratios on each held-out table alone (the pooled figure is their
    geometric mean, which one table where the shipped method misses makes 0)."""
    return {n: {f"ratio_vs_{base}": ratio_between(summary, [n], base, shipped, conc, "top5",
                                                  horizon)
                for base in (BASELINE, STOPPING_BASELINE)} for n in names}


def heldout_headline(shipped: str, vs_random: dict, vs_asha: dict, tables: dict) -> str:
    def ratio(figure: dict) -> str:
        return f"{figure['ratio']:.2f}x [90 % CI {figure['ci90'][0]:.2f}-{figure['ci90'][1]:.2f}]"
    parts = [f"{n}: {ratio(t[f'ratio_vs_{BASELINE}'])} vs random, "
             f"{ratio(t[f'ratio_vs_{STOPPING_BASELINE}'])} vs random + ASHA"
             for n, t in tables.items()]
    return (f"held out: {shipped} reaches the top-5 % target in {ratio(vs_random)} fewer "
            f"trial-epochs than random search and {ratio(vs_asha)} fewer than random + ASHA "
            f"(geometric means over tables and concurrencies; {'; '.join(parts)})")


def heldout_outcome(summary, tables, methods, shipped, seeds, s, agreement, plot,
                    timing, missing: dict | None = None) -> Outcome:
    names, conc, horizon = list(tables), s["concurrency"], s["horizon"]
    vs_random = ratio_between(summary, names, BASELINE, shipped, conc, "top5", horizon)
    vs_asha = ratio_between(summary, names, STOPPING_BASELINE, shipped, conc, "top5", horizon)
    regret_shipped = regret_at(summary, names, shipped, conc, QUICKSTART_TRAININGS)
    regret_asha = regret_at(summary, names, STOPPING_BASELINE, conc, QUICKSTART_TRAININGS)
    heldout = {"tables": len(DEVELOPMENT_TABLES) + len(names), "heldout_tables": len(names),
               "heldout_table_names": names, "development_tables": list(DEVELOPMENT_TABLES),
               "missing_tables": dict(missing or {}),
               "seeds": len(seeds), "search_seeds": [seeds[0], seeds[-1]],
               "ratio_vs_random": vs_random["ratio"], "ratio_vs_random_ci90": vs_random["ci90"],
               "ratio_vs_random_asha": vs_asha["ratio"],
               "ratio_vs_random_asha_ci90": vs_asha["ci90"],
               "regret_at_16": {"shipped": regret_shipped, STOPPING_BASELINE: regret_asha},
               "modes": ["reproducible"], "concurrency": list(conc), "shipped": shipped,
               "target": "top 5 % of configurations by held-out-seed mean",
               "per_concurrency": per_concurrency(summary, names, methods, conc),
               "per_table": per_table(summary, names, shipped, conc, horizon),
               "methods": rank_methods(summary, names, methods, conc, horizon)}
    met = (vs_random["ratio"] >= GOALS["ratio_vs_random"]
           and vs_random["ci90"][0] >= GOALS["ratio_vs_random_ci90_lo"]
           and vs_asha["ratio"] >= GOALS["ratio_vs_random_asha"]
           and regret_shipped <= regret_asha
           and not missing)  # a goal is judged on every held-out table
    return Outcome(
        ratio=vs_random["ratio"], met=met,
        headline=heldout_headline(shipped, vs_random, vs_asha, heldout["per_table"]),
        figures={"heldout": heldout, "summary": compact(summary), "ray_check": agreement,
                 "timing": timing, "plot": str(plot), "thresholds": {
                     n: thresholds(t) for n, t in tables.items()},
                 "best_heldout_mean": {n: max(t.heldout.values()) for n, t in tables.items()}},
        notes=[f"{len(seeds)} held-out search seeds per method, concurrency {list(conc)}, "
               f"reproducible mode, horizon {horizon} trainings"
               + "".join(f"; left out: {m}" for m in (missing or {}).values()),
               f"the simulated Tune loop gave the same trials as a real Tuner on "
               f"{agreement['same']} of {agreement['searches']} searches (concurrency 2)",
               f"replay {timing['replay_s']} s, Ray check {timing['ray_check_s']} s"])


def limited_seeds(s: dict) -> str:
    return ", ".join(f"{m} {v['seeds']}" for m, v in s["limited"].items()) or "none"


def compact(summary: dict) -> dict:
    """The summary without per-seed lists' noise: medians, reach counts, regret quartiles."""
    import numpy as np

    out = {}
    for key, entry in summary.items():
        out[key] = {"seeds": entry["seeds"],
                    **{t: {"median": entry[t]["median"], "reached": entry[t]["reached"],
                           "times": entry[t]["times"]} for t in TARGETS},
                    "regret_q": {b: [round(float(q), 5) for q in
                                     np.percentile(v, [25, 50, 75])]
                                 for b, v in entry["regret"].items()}}
    return out


# ---- the check against a real Tuner ------------------------------------------------------------
def ray_check(table: Table, s: dict, work_dir: Path) -> dict:
    """A few searches at concurrency 2 in the shipped mode through a real Tuner: the same
    trials (params and epochs reached, in order) as the simulation?"""
    import ray

    owned = not ray.is_initialized()
    if owned:
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
    checked, same = [], 0
    try:
        for method in s["ray_methods"]:
            experiment = experiment_for(table, method, 0, 2, trials=s["ray_trials"])
            with tempfile.TemporaryDirectory(dir=work_dir) as run_dir:
                live = ray_replay(experiment, table, Path(run_dir))
            simulated = simulate(experiment, table).trials
            agree = live == simulated
            same += agree
            checked.append({"method": method, "trials": len(live), "same": agree})
    finally:
        if owned:
            ray.shutdown()
    return {"searches": len(checked), "same": same, "checked": checked}


# ---- the plot ----------------------------------------------------------------------------------
STYLES = {"random": ("black", "--"), "random_asha": ("tab:orange", "-"),
          "tpe": ("tab:green", ":"), "tpe_asha": ("tab:red", "-"), "gp_asha": ("tab:purple", "-"),
          "bohb": ("tab:cyan", "-")}
SHIPPED_STYLE = ("tab:blue", "-")  # the shipped method, whichever it is, stands out


def regret_quartiles(entry: dict, budget: int) -> list[float]:
    """25th, 50th and 75th percentile of held-out regret at ``budget`` trainings: from the
    per-seed values of a fresh summary, or the quartiles results.json keeps (``compact``)."""
    import numpy as np

    if "regret_q" in entry:
        return entry["regret_q"][str(budget)]
    return list(np.percentile(entry["regret"][str(budget)], [25, 50, 75]))


def draw_regret(summary: dict, tables, methods, concurrencies, path: Path,
                shipped: str) -> None:
    """Held-out regret (best held-out mean - the returned configuration's) against full
    trainings spent, median and quartile band over search seeds; one panel per table and
    concurrency, one legend for every method drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = [(n, c) for n in tables for c in concurrencies]
    figure, axes = plt.subplots(1, len(cells), figsize=(5.2 * len(cells), 4.6), sharey=True,
                                squeeze=False)
    x = list(ANYTIME_TRAININGS)
    legend = {}
    for axis, (name, concurrency) in zip(axes[0], cells):
        for method in methods:
            entry = summary.get(f"{name}/{method}@{concurrency}")
            if entry is None:
                continue
            q = np.array([regret_quartiles(entry, b) for b in x])
            color, style = SHIPPED_STYLE if method == shipped else STYLES.get(method, ("0.6", "-"))
            width = 2.6 if method == shipped else 1.3
            (line,) = axis.plot(x, q[:, 1], color=color, ls=style, lw=width)
            legend.setdefault(method + (" (shipped)" if method == shipped else ""), line)
            axis.fill_between(x, q[:, 0], q[:, 2], color=color, alpha=0.10)
        axis.set(xlabel="full trainings spent (trial-epochs / max_epochs)",
                 title=f"{name}, concurrency {concurrency}")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out regret, val_dice (median, quartiles)")
    figure.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend),
                  fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def redraw_from_results(results_file: Path = REPO_ROOT / "bench" / "results.json",
                        path: Path = PLOT_FILE) -> Path:
    """bench/search_curves.png again from the `search` entry results.json keeps (its regret
    quartiles), without replaying: ``python -m bench.lc_search --redraw``."""
    import json

    figures = json.loads(results_file.read_text())["benchmarks"]["search"]["figures"]
    heldout = figures["heldout"]
    # summary keys are "<table>/<method>@<concurrency>"
    methods = dict.fromkeys(key.split("/")[1].split("@")[0] for key in figures["summary"])
    draw_regret(figures["summary"], heldout["heldout_table_names"], methods,
                heldout["concurrency"], path, heldout["shipped"])
    return path


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--redraw"]:
        sys.exit("usage: python -m bench.lc_search --redraw   (the benchmarks: python -m bench "
                 "search-dev | search)")
    print(redraw_from_results())
