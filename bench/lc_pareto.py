"""The Pareto benchmarks (issue 26): how many trial-epochs a multi-objective search needs before the
front it returns covers a share of the table's best hypervolume, val_dice (max) against a
training cost (min): MO-ASHA + multi-objective TPE (what experiments/quickstart_pareto.yaml
ships) against random search without stopping.

Searches are replayed on the learning-curve tables (bench/lc_table.py) through the product's own
searcher and scheduler, as the single-objective `search` benchmark replays them
(bench/lc_replay.py ``simulate``): ``sweep.search.make_searcher`` (SweepSearch telling Optuna a
vector, one direction per objective) and ``make_scheduler`` (OrderedMOASHA in the shipped,
reproducible mode), built from an ``Experiment`` with ``search.objectives``. The split, the
search seeds and the statistics (medians with misses, paired bootstrap ratios) are the `search`
benchmark's, imported from bench/lc_search.py.

What a search returns is its front: the complete trials (sweep/front.py: a pruned trial is no
candidate) that no other complete trial dominates, each a point (val_dice of its last epoch,
mean over the seeds the search saw; the configuration's cost), as pareto.csv lists them. Two
scores of that front, each its hypervolume relative to a table's best, at a fixed reference
point per table:
- ``seen`` (the headline): the best is the front of every configuration by the same values,
  what an exhaustive search would return. How fast a search finds the front of the problem it
  is given: the measure of the MO-ASHA paper (Schmucker et al. 2021).
- ``heldout``: the front's configurations scored by the mean of the seeds no search saw; the
  best is the front of every configuration by those means. No search can get near 95 % of it
  on these tables: an exhaustive search's front scores 0.04 of it on the development table
  (``ceiling_heldout``). Two seeds of a 6-epoch crack model do not predict two others
  (docs/DESIGN.md: bimodal seeds) and a front is a set of argmaxes, each chasing that noise.
  It is reported at fixed budgets, never as a time to a target.

The target, chosen on the development table from the tables' structure and random search
alone (`pareto-dev` figures): 80 % of the best seen hypervolume. 95 %, the issue's, is a top-1
target there: the best seen front is L-shaped (val_dice hardly trades against seconds), its
hypervolume is mostly the rectangle of the one configuration with the best val_dice (0.259,
next 0.243, a seed-noise gap), and the front of all 767 others scores 0.943. Random search
reached it in 2 of 10 searches within 300 full trainings, so every median would be "never",
the fate of the `search` benchmark's first "within 1 % of the best" target. 90 % needs one of
the top 3. 80 %: random search's median is reached well inside the horizon. How many searches
reach 90 % and 95 % by each kept budget is reported too.

Selection hygiene as in `search`: every choice here (the primary cost, the reference point,
the target) was made on the DEVELOPMENT table and search seeds, where `pareto-dev` ranks the
method variants; `pareto` reports on the HELDOUT tables and seeds.
"""
from __future__ import annotations

import functools
import math
import statistics
import time
from pathlib import Path

from bench.child import REPO_ROOT, BenchError
from bench.lc_methods import NO_STOP, shipped_sections
from bench.lc_replay import Table, key_of, simulate
from bench.lc_search import (
    DEVELOPMENT_SEARCH_SEEDS,
    DEVELOPMENT_TABLES,
    HELDOUT_SEARCH_SEEDS,
    HELDOUT_TABLES,
    available_tables,
    median_time,
    ratio_between,
    run_jobs,
)
from bench.registry import Context, Outcome
from sweep.pareto import dominates, hypervolume

# ---- the costs ------------------------------------------------------------------------------
# Primary cost, chosen on the development table (unet_thin): "train_s", the measured seconds of
# a training epoch. Its front there holds 11-12 configurations spread over batch size, width,
# optimizer and learning rate: a trade-off to search. The counted cost, FLOPs per image,
# changes with the grid's width {4, 8} only (every other setting leaves the model alone), so
# its front has two cost levels (the best width-4 and the best width-8 configurations) and its
# hypervolume is two single-objective searches side by side: it is counted and described per
# table (`flops`), not searched.
# train_s was measured with 2 runs at once on a shared machine: a cost a user pays, but one
# that moves with the load (the seen and held-out seeds' costs correlate 0.88 on unet_thin).
# The replay reads it from the table, so a replayed search stays a function of the table.
COST = "epoch_seconds"  # the result key the replay reports it under (bench/lc_replay.py)
OBJECTIVES = [{"val_dice": "max"}, {COST: "min"}]
MODES = ["max", "min"]
# The reference point: val_dice 0 and 1.1 x the table's costliest configuration. With exactly
# the maximum, that configuration could add nothing to any front however good its val_dice;
# 10 % beyond the worst point is the usual margin.
REFERENCE_MARGIN = 1.1
TARGETS = {"hv80": 0.80, "hv90": 0.90, "hv95": 0.95}  # of the best seen hypervolume
HEADLINE = "hv80"  # the module docstring says why not 95 %
GOAL_RATIO = 2.0  # issue 26: >= 2x fewer trial-epochs than random search

# ---- the methods ----------------------------------------------------------------------------
SHIPPED_FILE = REPO_ROOT / "experiments" / "quickstart_pareto.yaml"
MOASHA = {"grace_period": 1, "reduction_factor": 2, "metric": "val_loss"}
# name -> (search, scheduler, what); "shipped" reads experiments/quickstart_pareto.yaml.
METHODS = {
    "random": ({"sampler": "random"}, {"grace_period": NO_STOP},
               "random search, every trial trained to the end (the baseline)"),
    "shipped": (None, None, "what experiments/quickstart_pareto.yaml ships (multi-objective "
                            "TPE + MO-ASHA)"),
    "random_moasha": ({"sampler": "random"}, dict(MOASHA),
                      "random search + MO-ASHA (grace 1, halving, val_loss at the rungs)"),
    "motpe": ({"sampler": "tpe", "startup_trials": 4}, {"grace_period": NO_STOP},
              "multi-objective TPE, 4 start-up trials, no stopping"),
    "nsga2": ({"sampler": "nsga2", "startup_trials": 8}, {"grace_period": NO_STOP},
              "NSGA-II, generations of 8, no stopping"),
    "nsga2_moasha": ({"sampler": "nsga2", "startup_trials": 8}, dict(MOASHA),
                     "NSGA-II (generations of 8) + MO-ASHA"),
    # the settings a user of MO-ASHA + TPE would tune, one at a time from the shipped ones
    "motpe_moasha_s8": ({"sampler": "tpe", "startup_trials": 8}, dict(MOASHA),
                        "TPE + MO-ASHA with 8 start-up trials"),
    "motpe_moasha_dice": ({"sampler": "tpe", "startup_trials": 4},
                          {**MOASHA, "metric": "val_dice"},
                          "TPE + MO-ASHA ranking val_dice itself at the rungs"),
    "motpe_moasha_hb": ({"sampler": "tpe", "startup_trials": 4}, {**MOASHA, "brackets": 3},
                        "TPE + MO-ASHA in 3 Hyperband brackets (first rungs at 1, 2, 4)"),
}
BASELINE, SHIPPED = "random", "shipped"
DEV_METHODS = tuple(METHODS)
# Held out: the goal's two at every concurrency; three more for context at concurrency 2.
HELDOUT_METHODS = ("random", "shipped", "random_moasha", "motpe", "nsga2")
HELDOUT_CONTEXT = ("random_moasha", "motpe", "nsga2")

BUDGETS = (8, 16, 32, 64)  # full trainings at which the fronts' scores are kept
# Sized to ~15 min on 2 cores: a TPE + MO-ASHA search that misses the target runs to the
# horizon, ~400 trials, 4-12 s (TPE's asks and the rungs' sorting); pareto took 516-556 s with
# 25 seeds (50 would take twice that). Random search's median on the development table is
# ~60 trainings: the horizon holds it with room.
SETUP = {
    "full": dict(seeds=25, dev_seeds=15, concurrency=(1, 2, 4), dev_concurrency=(2,),
                 horizon=100, processes=2),
    "tiny": dict(seeds=2, dev_seeds=1, concurrency=(1, 2), dev_concurrency=(2,), horizon=8,
                 processes=1),
}
PLOT_FILE = REPO_ROOT / "bench" / "pareto_curves.png"


def method_sections(method: str, max_epochs: int) -> tuple[dict, dict]:
    """A method's search and scheduler sections for trials of ``max_epochs`` epochs."""
    if method not in METHODS:
        raise BenchError(f"unknown Pareto method {method!r}; choose from {', '.join(METHODS)}")
    search, scheduler, _ = METHODS[method]
    if method == SHIPPED:
        search, scheduler = shipped_sections(SHIPPED_FILE)
    search, scheduler = dict(search), dict(scheduler)
    if scheduler.get("grace_period") == NO_STOP:
        scheduler["grace_period"] = max_epochs
    scheduler["grace_period"] = min(int(scheduler.get("grace_period", 1)), max_epochs)
    return search, {**scheduler, "max_epochs": max_epochs}


def experiment_for(table: Table, method: str, seed: int, concurrency: int):
    """The replay's experiment, validated as a user's file would be, in the shipped mode."""
    from sweep.experiment import Experiment

    search, scheduler = method_sections(method, table.max_epochs)
    values = {"name": f"pareto-{method}-c{concurrency}-s{seed}",
              "train": {"model": "unet", "device": "cpu", **table.fixed_train()},
              "space": table.space(),
              "search": {**search, "seed": seed, "concurrency": concurrency, "trials": 10_000,
                         "mode": "reproducible", "seeds": table.seeds,
                         "objectives": [{"val_dice": "max"}, {"flops": "min"}]},
              "scheduler": scheduler, "wandb": {"enabled": False}}
    experiment = Experiment.from_dict(values, f"Pareto replay {method}")
    # Validated with a counted cost, then given the table's seconds: a live sweep refuses a
    # timed cost in reproducible mode (its value would move with the load and so would the
    # trials), but here it is a number read from the table, the same in every replay.
    experiment.search.objectives = [dict(o) for o in OBJECTIVES]
    return experiment


# ---- the tables with their costs ---------------------------------------------------------------
class ParetoTable(Table):
    """A learning-curve table with each configuration's cost and the scores of fronts.

    ``train_s``: a configuration's seconds per training epoch: per seed the median over its
    epochs (one epoch of a loaded machine took 73 s in unet_crop's table, 300x its others),
    then the mean over the seen seeds. A replayed trial reports it every epoch as
    ``epoch_seconds``; the simulated clock runs on it too, which decides only the order of
    events at concurrency > 1, and the reproducible mode makes decisions independent of it.
    ``seen`` / ``heldout_last``: last-epoch val_dice, mean of the seen / held-out seeds."""

    def __init__(self, data: dict):
        super().__init__(data)
        self.train_s = {k: statistics.fmean(statistics.median(r["epoch_s"])
                                            for r in self.seen_runs(c))
                        for k, c in self.configs.items()}
        self.seen = {k: last_mean(self.seen_runs(c)) for k, c in self.configs.items()}
        self.heldout_last = {k: last_mean([r for r in c["runs"]
                                           if r["seed"] in self.heldout_seeds])
                             for k, c in self.configs.items()}
        self.reference = [0.0, REFERENCE_MARGIN * max(self.train_s.values())]
        keys = list(self.configs)
        self.best_seen = self.volume(keys, self.seen)
        self.best_heldout = self.volume(keys, self.heldout_last)
        if self.best_seen <= 0 or self.best_heldout <= 0:
            raise BenchError(f"table {self.settings.get('problem')}: every configuration has "
                             f"val_dice 0, so no front has a hypervolume to compare")
        exhaustive = Front()
        for key in keys:
            exhaustive.add(key, (self.seen[key], self.train_s[key]))
        self.exhaustive = exhaustive.keys  # the front a search of every configuration returns

    def run(self, params: dict) -> dict:
        run = super().run(params)
        cost = self.train_s[key_of(self.snap(params))]
        return {**run, "epoch_s": [cost] * self.max_epochs}

    def volume(self, keys, dice: dict) -> float:
        return hypervolume([(dice[k], self.train_s[k]) for k in keys], MODES, self.reference)

    def front_scores(self, keys) -> tuple[float, float]:
        """(seen, heldout): a front's hypervolume relative to the table's best, per score."""
        return (self.volume(keys, self.seen) / self.best_seen,
                self.volume(keys, self.heldout_last) / self.best_heldout)


def last_mean(runs: list[dict]) -> float:
    return statistics.fmean(r["val_dice"][-1] for r in runs)


class Front:
    """The non-dominated set of the points added so far, kept as points arrive (equal points
    all kept, as sweep.pareto.pareto_front keeps them). ``add``: True if the point joined."""

    def __init__(self):
        self.points: list[tuple[tuple, tuple]] = []  # (configuration key, point)

    def add(self, key: tuple, point: tuple) -> bool:
        if any(dominates(other, point, MODES) for _, other in self.points):
            return False
        self.points = [(k, p) for k, p in self.points if not dominates(point, p, MODES)]
        self.points.append((key, point))
        return True

    @property
    def keys(self) -> list[tuple]:
        return [key for key, _ in self.points]


# ---- the counted cost, for the record ----------------------------------------------------------
def training_side(settings: dict) -> int:
    """The side of what a training step sees (training/loop.py training_side): the crop, else
    the folder's drawn size at the problem's scale."""
    train, folder = settings["train"], settings["folder"]
    return int(train.get("crop") or round(folder["size"] * train.get("scale", 1.0)))


@functools.cache
def flops_by_width(model: str, side: int, widths: tuple[int, ...]) -> dict[int, int]:
    """FLOPs of one forward pass per image at the training side, per width, counted as the
    training loop counts its `flops` cost (training/costs.py count_flops, batch 1, RGB). Once
    per process: the tables share their grid and sides."""
    import torch

    from models import create_model
    from training.costs import count_flops

    out = {}
    for width in widths:
        net = create_model(model, n_channels=3, n_classes=2, width=width).eval()
        with torch.inference_mode():
            out[int(width)] = count_flops(net, torch.zeros(1, 3, side, side))
    return out


def flops_front(table: ParetoTable) -> dict:
    """The counted cost's front by held-out means: how coarse it is (one level per width)."""
    flops = flops_by_width(table.settings["train"]["model"], training_side(table.settings),
                           tuple(table.grid["width"]))
    front = Front()
    for key, config in table.configs.items():
        front.add(key, (table.heldout_last[key], flops[config["params"]["width"]]))
    return {"flops_per_image": {str(w): f for w, f in flops.items()},
            "side_px": training_side(table.settings), "front_points": len(front.points),
            "cost_levels": len({point[1] for _, point in front.points})}


def table_figures(table: ParetoTable) -> dict:
    return {"reference": [0.0, round(table.reference[1], 4)],
            "configurations": len(table.configs),
            "best_hypervolume_seen": round(table.best_seen, 5),
            "best_hypervolume_heldout": round(table.best_heldout, 5),
            "front_points_seen": len(table.exhaustive),
            "ceiling_heldout": round(table.front_scores(table.exhaustive)[1], 4),
            "train_s_range": [round(min(table.train_s.values()), 4),
                              round(max(table.train_s.values()), 4)],
            "flops": flops_front(table)}


# ---- one search ------------------------------------------------------------------------------
def front_path(table: ParetoTable, method: str, seed: int, concurrency: int,
               horizon_epochs: int, until_epochs: int = 0, front: Front | None = None
               ) -> list[tuple[int, float, float]]:
    """One search's front over time: (trial-epochs spent, seen score, held-out score), a row
    each time a complete trial joins its front (``front``, filled as it goes). The search ends
    at the horizon, or once its seen score reached the HEADLINE target and it has spent
    ``until_epochs`` (so that every search is scored at the budgets kept)."""
    front = front if front is not None else Front()
    path: list[tuple[int, float, float]] = []

    def follow(trace) -> bool:
        event = trace.events[-1]
        if event.epoch == table.max_epochs:  # the trial completes: a candidate of the front
            key = key_of(table.snap(trace.trials[event.trial]["params"]))
            if front.add(key, (event.val_dice, table.train_s[key])):
                path.append((event.spent, *table.front_scores(front.keys)))
        reached = bool(path) and path[-1][1] >= TARGETS[HEADLINE]
        return reached and event.spent >= until_epochs

    simulate(experiment_for(table, method, seed, concurrency), table,
             epoch_budget=horizon_epochs, until=follow)
    return path


def hit_time(path, share: float) -> int | None:
    """Trial-epochs until the seen score first reached ``share`` (None: not in this path)."""
    return next((spent for spent, seen, _ in path if seen >= share), None)


def score_at(path, spent: float, column: int) -> float:
    """The front's score (1: seen, 2: held-out) after ``spent`` trial-epochs. A search that
    stopped earlier keeps its last score: the seen one can only grow, so it is a lower bound."""
    score = 0.0
    for row in path:
        if row[0] > spent:
            break
        score = row[column]
    return score


# ---- many searches ---------------------------------------------------------------------------
_TABLES: dict[str, ParetoTable] = {}


def _replay(job: tuple) -> list:
    name, method, concurrency, seed, horizon, until = job
    table = _TABLES[name]
    return front_path(table, method, seed, concurrency, horizon * table.max_epochs,
                      until * table.max_epochs)


def jobs_for(tables, methods, concurrencies, seeds, s: dict, context=()) -> list[tuple]:
    """Every (table, method, concurrency, seed) replay; ``context`` methods at one
    concurrency (2 where it is run)."""
    until = min(max(BUDGETS), s["horizon"])
    single = 2 if 2 in concurrencies else concurrencies[0]
    return [(name, method, concurrency, seed, s["horizon"], until)
            for name in tables for method in methods for concurrency in concurrencies
            if method not in context or concurrency == single for seed in seeds]


def replay_all(tables: dict[str, ParetoTable], jobs: list[tuple], processes: int) -> dict:
    """{(table, method, concurrency): [front path per seed]}, spread over processes; the
    slowest (model-based with MO-ASHA: hundreds of trials) first, so none comes last alone."""
    _TABLES.clear()
    _TABLES.update(tables)
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][1] in ("random", "motpe", "nsga2"))
    return run_jobs(jobs, order, _replay, processes, "Pareto searches")


def summarise(paths: dict, tables: dict[str, ParetoTable], s: dict) -> dict:
    """Per "table/method@concurrency": hit times of the HEADLINE target and their median (the
    shape bench/lc_search.py ratio_between reads), both scores at the kept budgets, and how
    many searches reached each target by each budget (every search ran at least that far)."""
    summary = {}
    for (name, method, concurrency), runs in paths.items():
        epochs = tables[name].max_epochs
        budgets = [b for b in BUDGETS if b <= s["horizon"]]
        times = [hit_time(p, TARGETS[HEADLINE]) for p in runs]
        summary[f"{name}/{method}@{concurrency}"] = {
            "seeds": len(runs),
            HEADLINE: {"times": times, "reached": sum(t is not None for t in times),
                       "median": median_time(times, s["horizon"] * epochs)},
            "seen_at": {str(b): [round(score_at(p, b * epochs, 1), 4) for p in runs]
                        for b in budgets},
            "heldout_at": {str(b): [round(score_at(p, b * epochs, 2), 4) for p in runs]
                           for b in budgets},
            "reached_by": {target: {str(b): sum(score_at(p, b * epochs, 1) >= share
                                                for p in runs) for b in budgets}
                           for target, share in TARGETS.items()},
            "curves": runs}
    return summary


def medians_at(entry: dict, kind: str) -> dict:
    return {b: round(statistics.median(v), 4) for b, v in entry[kind].items()}


def cell_figures(entry: dict) -> dict:
    return {f"{HEADLINE}_median": entry[HEADLINE]["median"],
            f"{HEADLINE}_reached": [entry[HEADLINE]["reached"], entry["seeds"]],
            "seen_median_at": medians_at(entry, "seen_at"),
            "heldout_median_at": medians_at(entry, "heldout_at"),
            "reached_by": entry["reached_by"]}


def rank(summary: dict, names, methods, concurrencies, horizon: int) -> list[dict]:
    """Methods by median trial-epochs to the HEADLINE target (geometric mean over the cells,
    inf if a cell's median is), with the ratio to random search's and its interval."""
    rows = []
    for method in methods:
        cells = [summary[f"{n}/{method}@{c}"] for n in names for c in concurrencies
                 if f"{n}/{method}@{c}" in summary]
        if not cells:
            continue
        medians = [cell[HEADLINE]["median"] for cell in cells]
        typical = (math.inf if any(math.isinf(m) for m in medians)
                   else math.exp(sum(math.log(m) for m in medians) / len(medians)))
        vs = ratio_between(summary, names, BASELINE, method, concurrencies, HEADLINE, horizon)
        last = str(max(int(b) for b in cells[0]["seen_at"]))
        rows.append({"method": method, f"{HEADLINE}_median": round(typical, 1),
                     "reached": [sum(c[HEADLINE]["reached"] for c in cells),
                                 sum(c["seeds"] for c in cells)],
                     "ratio_vs_random": vs["ratio"], "ci90": vs["ci90"],
                     f"seen_median_at_{last}": round(statistics.median(
                         v for c in cells for v in c["seen_at"][last]), 4)})
    return sorted(rows, key=lambda r: (r[f"{HEADLINE}_median"], -r[f"seen_median_at_{last}"]))


def versus_random(summary: dict, names, concurrencies, horizon: int) -> str:
    """The shipped method against random search in words: the ratio of medians with its
    interval, or, where the shipped median is never (fewer than half its searches reached
    the target within the horizon), how many reached it on each side."""
    vs = ratio_between(summary, names, BASELINE, SHIPPED, concurrencies, HEADLINE, horizon)
    if vs["ratio"] > 0 and math.isfinite(vs["ratio"]):
        return (f"{vs['ratio']:.2f}x fewer trial-epochs than random search "
                f"[90 % CI {vs['ci90'][0]:.2f}-{vs['ci90'][1]:.2f}]")

    def reached(method: str) -> str:
        cells = [summary[f"{n}/{method}@{c}"] for n in names for c in concurrencies
                 if f"{n}/{method}@{c}" in summary]
        return (f"{sum(c[HEADLINE]['reached'] for c in cells)}/"
                f"{sum(c['seeds'] for c in cells)}")

    return (f"reached in {reached(SHIPPED)} searches within {horizon} trainings, random "
            f"search in {reached(BASELINE)}: ratio {vs['ratio']:.2f}")


def compact(summary: dict) -> dict:
    return {key: {k: v for k, v in entry.items() if k != "curves"}
            for key, entry in summary.items()}


# ---- the two benchmarks ----------------------------------------------------------------------
def pareto_tables(ctx: Context, names) -> tuple[dict[str, ParetoTable], dict]:
    """The committed tables with their costs; tiny mode: the hand-made table under each name."""
    if ctx.tiny:
        tiny = ParetoTable(tiny_table())
        return {name: tiny for name in names}, {}
    tables, missing = available_tables(ctx, tuple(names))
    return {name: ParetoTable(t.data) for name, t in tables.items()}, missing


def run_development(ctx: Context) -> Outcome:
    """`pareto-dev`: every method variant on the development table and seeds; names the best."""
    s = SETUP["tiny" if ctx.tiny else "full"]
    tables, missing = pareto_tables(ctx, DEVELOPMENT_TABLES)
    seeds = DEVELOPMENT_SEARCH_SEEDS[:s["dev_seeds"]]
    began = time.perf_counter()
    jobs = jobs_for(tables, DEV_METHODS, s["dev_concurrency"], seeds, s)
    summary = summarise(replay_all(tables, jobs, s["processes"]), tables, s)
    ranking = rank(summary, list(tables), DEV_METHODS, s["dev_concurrency"], s["horizon"])
    best = ranking[0]["method"]
    shipped_row = next(r for r in ranking if r["method"] == SHIPPED)
    lines = [f"| {r['method']} | {r[f'{HEADLINE}_median']:g} | {r['reached'][0]}/"
             f"{r['reached'][1]} | {r['ratio_vs_random']:.2f} [{r['ci90'][0]:.2f}, "
             f"{r['ci90'][1]:.2f}] |" for r in ranking]
    return Outcome(
        ratio=shipped_row["ratio_vs_random"], met=None,
        headline=f"development split: {best} ranks first (median "
                 f"{ranking[0][f'{HEADLINE}_median']:g} trial-epochs to "
                 f"{TARGETS[HEADLINE]:.0%} of the best hypervolume); shipped: "
                 + versus_random(summary, list(tables), s["dev_concurrency"], s["horizon"]),
        figures={"tables": list(tables), "missing_tables": missing,
                 "search_seeds": list(seeds), "concurrency": list(s["dev_concurrency"]),
                 "horizon_trainings": s["horizon"], "target": HEADLINE,
                 "ranking": ranking, "best": best,
                 "methods": {m: METHODS[m][2] for m in DEV_METHODS},
                 "per_table": {n: table_figures(t) for n, t in tables.items()},
                 "cells": {k: cell_figures(v) for k, v in summary.items()},
                 "summary": compact(summary),
                 "replay_s": round(time.perf_counter() - began, 1)},
        notes=[f"{len(seeds)} search seeds per method, concurrency {list(s['dev_concurrency'])}, "
               f"reproducible mode, horizon {s['horizon']} trainings; table "
               f"{', '.join(tables)}",
               "ranking (method | median trial-epochs to the target | reached | x fewer than "
               "random [90 % CI]):\n" + "\n".join(lines)])


def run(ctx: Context) -> Outcome:
    """`pareto`: the shipped method against the baselines on the held-out tables and seeds."""
    s = SETUP["tiny" if ctx.tiny else "full"]
    tables, missing = pareto_tables(ctx, HELDOUT_TABLES)
    seeds = HELDOUT_SEARCH_SEEDS[:s["seeds"]]
    began = time.perf_counter()
    jobs = jobs_for(tables, HELDOUT_METHODS, s["concurrency"], seeds, s, HELDOUT_CONTEXT)
    summary = summarise(replay_all(tables, jobs, s["processes"]), tables, s)
    replay_s = time.perf_counter() - began
    plot = ctx.work_dir.parent / "pareto_curves.png" if ctx.tiny else PLOT_FILE
    draw(summary, tables, HELDOUT_METHODS, 2 if 2 in s["concurrency"] else s["concurrency"][0],
         s["horizon"], plot)
    return heldout_outcome(summary, tables, missing, seeds, s, round(replay_s, 1), plot)


def heldout_outcome(summary, tables, missing, seeds, s, replay_s, plot: Path) -> Outcome:
    names, conc, horizon = list(tables), list(s["concurrency"]), s["horizon"]
    vs = ratio_between(summary, names, BASELINE, SHIPPED, conc, HEADLINE, horizon)
    search, scheduler = shipped_sections(SHIPPED_FILE)
    per_table = {name: {**table_figures(tables[name]),
                        "ratio_vs_random": ratio_between(summary, [name], BASELINE, SHIPPED,
                                                         conc, HEADLINE, horizon),
                        "cells": {f"{m}@{c}": cell_figures(summary[f"{name}/{m}@{c}"])
                                  for m in HELDOUT_METHODS for c in conc
                                  if f"{name}/{m}@{c}" in summary}}
                 for name in names}
    share = f"{TARGETS[HEADLINE]:.0%}"
    figures = {
        "ratio_vs_random": vs["ratio"], "ratio_vs_random_ci90": vs["ci90"],
        "target": f"{share} of the table's best hypervolume by seen-seed values "
                  f"(val_dice max, train_s min); 95 % is a top-1 target here (module docstring)",
        "objectives": OBJECTIVES, "primary_cost": "train_s: the table's seconds per epoch",
        "reference": f"val_dice 0, train_s {REFERENCE_MARGIN} x the table's costliest",
        "shipped": {"file": str(SHIPPED_FILE.relative_to(REPO_ROOT)), "search": search,
                    "scheduler": scheduler},
        "mode": "reproducible", "concurrency": conc, "horizon_trainings": horizon,
        "budgets_trainings": [b for b in BUDGETS if b <= horizon],
        "heldout_table_names": names, "missing_tables": missing,
        "development_tables": list(DEVELOPMENT_TABLES), "seeds": len(seeds),
        "search_seeds": [seeds[0], seeds[-1]],
        "methods": {m: METHODS[m][2] for m in HELDOUT_METHODS},
        "ranking": rank(summary, names, HELDOUT_METHODS, [2] if 2 in conc else conc[:1],
                        horizon),
        "per_table": per_table, "replay_s": replay_s, "plot": str(plot),
        "summary": compact(summary)}
    met = vs["ratio"] >= GOAL_RATIO and not missing  # judged on every held-out table
    return Outcome(
        ratio=vs["ratio"], met=met,
        headline=f"held out ({', '.join(names)}), {share} of the best hypervolume (val_dice "
                 f"vs seconds per epoch), MO-ASHA + multi-objective TPE (shipped): "
                 + versus_random(summary, names, conc, horizon),
        figures=figures,
        notes=[f"{len(seeds)} held-out search seeds, concurrency {conc} (random + MO-ASHA, "
               f"TPE and NSGA-II without stopping at 2 only), reproducible mode, horizon "
               f"{horizon} trainings" + "".join(f"; left out: {m}" for m in missing.values()),
               "held-out-seed scores: an exhaustive search's front scores "
               + ", ".join(f"{n} {per_table[n]['ceiling_heldout']:.2f}" for n in names)
               + " of the best held-out hypervolume (seed noise), so they are given at fixed "
                 "budgets (heldout_median_at), not as a time to a target",
               f"replay {replay_s} s"])


# ---- the plot --------------------------------------------------------------------------------
STYLES = {"random": ("black", "--"), "shipped": ("tab:blue", "-"),
          "random_moasha": ("tab:orange", "-"), "motpe": ("tab:green", ":"),
          "nsga2": ("tab:purple", ":")}


def draw(summary: dict, tables, methods, concurrency: int, horizon: int, path: Path) -> None:
    """Seen hypervolume share against trial-epochs, median and quartile band over the search
    seeds, one panel per held-out table at one concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(tables)
    figure, axes = plt.subplots(1, len(names), figsize=(5.4 * len(names), 4.4), sharey=True,
                                squeeze=False)
    for axis, name in zip(axes[0], names):
        x = np.linspace(0, horizon * tables[name].max_epochs, 150)
        for method in methods:
            entry = summary.get(f"{name}/{method}@{concurrency}")
            if entry is None:
                continue
            curves = np.array([[score_at(p, b, 1) for b in x] for p in entry["curves"]])
            q = np.percentile(curves, [25, 50, 75], axis=0)
            color, style = STYLES.get(method, ("0.5", "-"))
            axis.plot(x, q[1], color=color, ls=style, lw=2.4 if method == SHIPPED else 1.3,
                      label=method)
            axis.fill_between(x, q[0], q[2], color=color, alpha=0.12)
        axis.axhline(TARGETS[HEADLINE], color="0.6", lw=0.8)
        axis.set(xlabel="trial-epochs", title=f"{name}, concurrency {concurrency}")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("hypervolume / best (seen seeds): median, quartiles")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ---- tiny mode -------------------------------------------------------------------------------
def tiny_table() -> dict:
    """A hand-made table for tiny mode and the tests (no training): lr x width x batch size,
    4 seeds, 6 epochs. val_dice climbs to a plateau set by lr, width and batch size; wider
    models and smaller batches take more seconds. The held-out seeds score 0.01 below the seen
    ones, so the seen front is the held-out front (an exhaustive search scores 1 on both)."""
    grid = {"lr": [1e-4, 1e-3, 1e-2], "width": [4, 8], "batch_size": [4, 16]}
    plateau = {1e-4: 0.3, 1e-3: 0.7, 1e-2: 0.1}
    configs = []
    for lr in grid["lr"]:
        for width in grid["width"]:
            for batch in grid["batch_size"]:
                top = plateau[lr] + (0.1 if width == 8 else 0.0) + (0.05 if batch == 4 else 0)
                seconds = 0.1 * width / 4 * (1.5 if batch == 4 else 1.0)
                runs = []
                for seed in range(4):
                    dice = [round((top - 0.01 * (seed >= 2)) * e / 6, 6) for e in range(1, 7)]
                    runs.append({"seed": seed, "val_dice": dice,
                                 "val_loss": [round(1 - d, 6) for d in dice],
                                 "epoch_s": [seconds] * 6})
                configs.append({"params": {"lr": lr, "width": width, "batch_size": batch},
                                "runs": runs})
    settings = {"problem": "tiny_pareto", "grid": grid, "max_epochs": 6, "seeds": [0, 1, 2, 3],
                "train": {"model": "unet", "scale": 1.0}, "folder": {"images": 8, "size": 32}}
    return {"format": 1, "code_version": "hand-made", "settings": settings,
            "configs": configs, "complete": True}
