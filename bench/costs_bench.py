"""`costs`: the cost metrics of every epoch's row (training/costs.py, docs/COSTS.md) measured as a
sweep's trials measure them: their values, their noise and what measuring them costs.

Two models, alternating, each run in a fresh process (a trial's first epoch pays what a fresh
process pays: first touches, the optimizer's state, the FLOP count), 1 intra-op thread as a
trial with ``resources.cpus: 1`` has:
- ``tiny``: the tests' model (tests/helpers.py ``tiny_config``: UNet width 4, 32 px, 20 images);
- ``smoke``: experiments/smoke.yaml's ``train`` section, read from the file, at the middle
  ``batch_size`` of its space (the latencies do not depend on the batch size or the learning
  rate, the epoch's length and so the measurement's share do).
Each run trains ``EPOCHS`` epochs through ``training.loop.train``, unchanged: the child wraps
``CostMeter.measure`` in a clock (it runs once per epoch, after validation, inside
``epoch_seconds``), so the measurement's share of an epoch is its seconds over
``epoch_seconds``. Headline: that share for the smoke model's later epochs (median); the first
epoch's, which also counts the FLOPs, beside it.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.child import REPO_ROOT, BenchError, run_in_child
from bench.measure import interleave, median, spread
from bench.registry import Context, Outcome

GOAL = 0.05  # the measurement's share of a later epoch: the W&B mirror's allowance (<= 1.05)
EPOCHS = 3
# The keys whose noise is summarised (training/cost_keys.py LOAD_DEPENDENT, cpu_load apart: it
# is the condition they were measured under, reported beside them).
TIMED = ("latency_ms", "latency_eval_ms", "latency_ms_spread", "peak_mem_mb")
COUNTED = ("params", "flops")
SMOKE = REPO_ROOT / "experiments" / "smoke.yaml"
SMOKE_BATCH = 4  # the middle of smoke.yaml's batch_size choice [2, 4, 8]
CHILD = "bench.costs_bench:measure_runs"
# tests/helpers.py tiny_config, the model every test trains (bench/ does not import tests/).
TINY_MODEL = dict(model="unet", width=4, synthetic_images=20, synthetic_size=32, batch_size=4,
                  eval_batch_size=4, val_percent=20, lr=1e-3, threads=1)


@dataclass
class CostsSize:
    runs: int  # fresh processes per model
    epochs: int
    smoke_images: int | None  # None: the file's synthetic_images


# 5 runs: 15 rows per model for the spread; about a minute of the children's CPU time here,
# 1 run of each model taking under a minute on 2 cores busy with other jobs (2026-12).
FULL = CostsSize(runs=5, epochs=EPOCHS, smoke_images=None)
TINY = CostsSize(runs=1, epochs=2, smoke_images=24)


def run(ctx: Context) -> Outcome:
    size = TINY if ctx.tiny else FULL
    configs = {"tiny": dict(TINY_MODEL), "smoke": smoke_settings(size.smoke_images)}
    cache_dir = ctx.work_dir / "cache"
    for config in configs.values():
        config.update(epochs=size.epochs, device="cpu", cache_dir=str(cache_dir))
        prepare_data(config)  # decoded once here: no run pays the decode
    if ctx.tiny:  # proves the code in one process (one torch import); figures mean nothing
        configs_in = [{**config, "out_dir": str(ctx.work_dir / name)}
                      for name, config in configs.items()]
        both = run_in_child(CHILD, {"configs": configs_in}, ctx.work_dir, "both", timeout=300)
        runs = {name: [rows] for name, rows in zip(configs, both["runs"])}
    else:  # a fresh process per run, the models alternating so the load falls on both alike
        runs = interleave({name: one_run(name, configs[name], ctx.work_dir)
                           for name in configs}, ctx.repeats or size.runs)
    return summarise(runs, configs, size)


def one_run(name: str, config: dict, work_dir: Path):
    def run_once(repeat: int) -> list[dict]:
        kwargs = {"configs": [{**config, "out_dir": str(work_dir / f"{name}{repeat}")}]}
        return run_in_child(CHILD, kwargs, work_dir, f"{name}{repeat}", timeout=900)["runs"][0]
    return run_once


def smoke_settings(images: int | None) -> dict:
    from sweep.experiment import load_experiment

    train = load_experiment(SMOKE).train.to_dict()
    settings = {k: v for k, v in train.items() if k not in ("out_dir", "load", "cache_dir")}
    settings["batch_size"] = SMOKE_BATCH
    if images is not None:
        settings["synthetic_images"] = images
    return settings


def prepare_data(config: dict) -> None:
    from training.config import TrainConfig

    TrainConfig.from_dict({**config, "out_dir": "unused"}, "bench costs").load_data()


# ---- the summary ---------------------------------------------------------------------------
def summarise(runs: dict[str, list[dict]], configs: dict, size: CostsSize) -> Outcome:
    figures = {name: model_figures(rows_of_runs, configs[name])
               for name, rows_of_runs in runs.items()}
    share = figures["smoke"]["measure_share"]
    later, first = share["later_epochs"]["median"], share["first_epoch"]["median"]
    load = figures["smoke"]["over_rows"]["cpu_load"]["median"]
    headline = (f"measuring the costs took {later:.1%} of a later epoch and {first:.1%} of the "
                f"first (smoke model, median; cpu_load {load:.2f} in the rows); latency_ms "
                f"{figures['smoke']['over_rows']['latency_ms']['median']:.2f} ms, spread "
                f"{figures['smoke']['over_rows']['latency_ms']['spread']:.2f} over the rows")
    notes = [
        f"{len(runs['smoke'])} runs per model, each a fresh process, x {size.epochs} epochs, "
        "the models alternating; 1 intra-op thread; training.loop.train unchanged, "
        "CostMeter.measure timed by a wrapper in the child; share = its seconds / "
        "epoch_seconds (which hold it)",
        "over_rows: median and (p90 - p10) / median (training.costs.spread) over every row of "
        "the model; per_run_medians: each run's median, min / median / max over the runs",
        "the timed figures move with the load: compare cpu_load (the 1-minute load average per "
        "CPU, as each row recorded it) before comparing them with another run",
    ]
    if later > GOAL:
        notes.append(f"goal missed: the measurement took {later:.1%} of a later epoch")
    return Outcome(ratio=later, headline=headline, met=later <= GOAL, figures=figures,
                   notes=notes)


def model_figures(rows_of_runs: list[list[dict]], config: dict) -> dict:
    rows = [row for run_rows in rows_of_runs for row in run_rows]
    counted = {}
    for key in COUNTED:
        values = {row[key] for row in rows}
        if len(values) != 1:  # counted, not timed: any difference is a bug
            raise BenchError(f"{key} differs between rows of one model: {sorted(values)}")
        counted[key] = values.pop()
    firsts = [run_rows[0] for run_rows in rows_of_runs]
    laters = [row for run_rows in rows_of_runs for row in run_rows[1:]]
    over_rows = {key: row_stats([row[key] for row in rows]) for key in TIMED}
    over_rows["peak_mem_mb, first epochs"] = row_stats([row["peak_mem_mb"] for row in firsts])
    over_rows["peak_mem_mb, later epochs"] = row_stats([row["peak_mem_mb"] for row in laters])
    over_rows["cpu_load"] = row_stats([row["cpu_load"] for row in rows])
    return {
        "setup": {k: config[k] for k in ("model", "width", "synthetic_images",
                                         "synthetic_size", "batch_size", "eval_batch_size",
                                         "val_percent", "threads", "epochs")},
        **counted,
        "over_rows": over_rows,
        "per_run_medians": {key: spread([run_median(run_rows, key)
                                         for run_rows in rows_of_runs]) for key in TIMED},
        "measure_share": {"first_epoch": spread([row["measure_share"] for row in firsts]),
                          "later_epochs": spread([row["measure_share"] for row in laters])},
        "epoch_seconds": {"first_epoch": spread([row["epoch_seconds"] for row in firsts]),
                          "later_epochs": spread([row["epoch_seconds"] for row in laters])},
        "runs": rows_of_runs,
    }


def finite(values: list[float]) -> list[float]:
    """NaN (peak memory where the kernel refuses the reset) is no measurement."""
    return [v for v in values if v is not None and math.isfinite(v)]


def row_stats(values: list[float]) -> dict:
    from training.costs import spread as relative_spread

    kept = finite(values)
    if not kept:
        return {"median": None, "spread": None, "rows": 0}
    middle = statistics.median(kept)
    return {"median": middle, "spread": relative_spread(kept) if middle else None,
            "rows": len(kept)}


def run_median(run_rows: list[dict], key: str) -> float:
    kept = finite([row[key] for row in run_rows])
    if not kept:
        raise BenchError(f"no finite {key} in a run")
    return median(kept)


# ---- the child process --------------------------------------------------------------------
def measure_runs(configs: list[dict]) -> dict:
    """Training runs one after another; each run's rows: its cost metrics, epoch seconds and
    the seconds each epoch's cost measurement took (the product's CostMeter, timed from
    outside)."""
    from training import costs

    spent: list[float] = []
    measure = costs.CostMeter.measure

    def timed_measure(self, timer, budget_s):
        start = time.perf_counter()
        try:
            return measure(self, timer, budget_s)
        finally:
            spent.append(time.perf_counter() - start)

    costs.CostMeter.measure = timed_measure  # this child only: it exits after the runs
    runs = []
    for config in configs:
        spent.clear()
        runs.append(rows_of(config, spent))
    return {"runs": runs}


def rows_of(config: dict, spent: list[float]) -> list[dict]:
    from training.config import TrainConfig
    from training.cost_keys import COST_KEYS
    from training.loop import train

    train_config = TrainConfig.from_dict(config, "bench costs")
    history = train(train_config, train_config.load_data()).history
    if len(spent) != len(history):
        raise BenchError(f"{len(spent)} cost measurements for {len(history)} epochs")
    return [{"epoch": row["epoch"], "epoch_seconds": row["epoch_seconds"], "measure_s": seconds,
             "measure_share": seconds / row["epoch_seconds"],
             **{key: none_if_nan(row[key]) for key in COST_KEYS}}
            for row, seconds in zip(history, spent)]


def none_if_nan(value):
    """JSON has no NaN: a cost that could not be measured is recorded as null."""
    return None if isinstance(value, float) and math.isnan(value) else value
