"""`search-live`: does the replay's ranking hold on the live loop? The two methods that the
`search-dev` benchmark ranked first and second (read from bench/results.json) run as real
sweeps through the
product's runner, on the learning-curve table's own data set, settings and space, a few seeds
each. Both are scored on one target: a share of the best val_dice any of these sweeps reached.
"""
from __future__ import annotations

from pathlib import Path

from bench.child import REPO_ROOT
from bench.lc_methods import resolved_sections
from bench.lc_replay import grid_fixed, grid_space
from bench.lc_table import data_folder, problem_settings
from bench.measure import median, ratio
from bench.registry import Context, Outcome
from bench.sweeps import epoch_timeline, sweep_side, to_target
from sweep.rundir import TUNE_DIR

LIVE = {"full": dict(trials=24, concurrency=1, seeds=(0, 1, 2)),
        "tiny": dict(trials=2, concurrency=1, seeds=(0,))}
FALLBACK = ("tpe_asha", "random_asha")  # before the `search` benchmark has results
TARGET_FRACTION = 0.97
RESULTS = REPO_ROOT / "bench" / "results.json"


def top_two(results_path: Path = RESULTS) -> tuple[str, str]:
    """The development ranking's best two methods (`search-dev`, bench/lc_search.py)."""
    from bench.results import load_results

    try:
        ranking = load_results(results_path)["benchmarks"]["search-dev"]["figures"]["ranking"]
    except (KeyError, OSError, ValueError):
        return FALLBACK
    names = [row["method"] for row in ranking]
    return (names[0], names[1]) if len(names) >= 2 else FALLBACK


def live_values(settings: dict, folder: Path, cache: Path, method: str, seed: int,
                s: dict) -> dict:
    """The sweep a user would write for the table's problem, searched by ``method``."""
    search, scheduler = resolved_sections(method, settings["max_epochs"])
    train = {**settings["train"], "data_dir": str(folder), "cache_dir": str(cache),
             **grid_fixed(settings["grid"])}
    return {"name": f"live_{method}_s{seed}", "train": train,
            "space": grid_space(settings["grid"]),
            "search": {**search, "seed": seed, "trials": s["trials"],
                       "concurrency": s["concurrency"]},
            "scheduler": scheduler, "resources": {"cpus": 1.0, "gpus": 0},
            "wandb": {"enabled": False}}


def run(ctx: Context) -> Outcome:
    s = LIVE["tiny" if ctx.tiny else "full"]
    from bench.lc_search import DEVELOPMENT_TABLES

    settings = problem_settings("tiny" if ctx.tiny else DEVELOPMENT_TABLES[0])
    folder = data_folder(ctx.work_dir, settings)
    first, second = top_two()
    timelines: dict[str, list] = {first: [], second: []}
    for round_, seed in enumerate(s["seeds"]):
        order = [first, second] if round_ % 2 == 0 else [second, first]
        for method in order:
            values = live_values(settings, folder, ctx.work_dir / "cache", method, seed, s)
            result = sweep_side(ctx, values, f"{method}_s{seed}")
            timelines[method].append(epoch_timeline(Path(result["run_dir"]) / TUNE_DIR))
    best = max(r["val_dice"] for runs in timelines.values() for rows in runs for r in rows)
    target = TARGET_FRACTION * best
    reached = {m: [to_target(rows, target) for rows in runs] for m, runs in timelines.items()}
    return summarise_live(reached, first, second, target, best, s)


def spent(reached: list[dict], miss: int) -> list[int]:
    """Trial-epochs to the target per seed; a miss counts as ``miss``."""
    return [r["trial_epochs"] or miss for r in reached]


def summarise_live(reached: dict, first: str, second: str, target: float, best: float,
                   s: dict) -> Outcome:
    # A miss counts as more than any sweep of either method spent: a method that stopped early
    # and never got there must not rank above one that spent more and did (ASHA's sweeps spend
    # far fewer trial-epochs for the same number of trials).
    miss = max(r["total"] for runs in reached.values() for r in runs) + 1
    a, b = median(spent(reached[first], miss)), median(spent(reached[second], miss))
    value = ratio(b, a)
    misses = {m: sum(r["trial_epochs"] is None for r in runs) for m, runs in reached.items()}
    return Outcome(
        ratio=value, met=a <= b,
        headline=f"{first} {value:.2f}x fewer trial-epochs than {second} to val_dice "
                 f"{target:.3f} (median {a:g} vs {b:g}): the replay's ranking "
                 + ("holds" if a <= b else "does not hold"),
        figures={"first": first, "second": second, "target": target, "best": best,
                 "reached": reached,
                 "trial_epochs": {m: spent(r, miss) for m, r in reached.items()},
                 "setup": s},
        notes=[f"{len(s['seeds'])} seeds; {s['trials']} trials each, {s['concurrency']} at a "
               f"time, on the learning-curve table's data set, settings and space; target = "
               f"{TARGET_FRACTION} x the best val_dice any of these sweeps reached ({best:.3f})",
               f"seeds that never reached the target (each counted as {miss} trial-epochs, "
               f"one more than any sweep of either method spent): {misses}"])
