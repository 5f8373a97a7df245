"""The `slots` benchmark (issue 16): how busy a sweep keeps its slots, beside raw Ray Tune on the
same work.

- sweep: an experiment as shipped (quickstart in full mode) through the product's runner; from
  its trial_status.json clock: effective concurrency (sum of epoch compute / wall of the sweep
  proper, first placement to last end), overhead vs the ideal (wall / (compute / concurrency)),
  median start-up and gap;
- raw: the same trials (each one's settings, for the epochs it ran, no early stopping) replayed
  by a plain Ray Tune run: a function trainable over ``training.loop.train``, reuse_actors=True,
  the same concurrency and CPUs per trial; its wall time around ``Tuner.fit`` against its own
  epochs' compute gives its overhead vs the ideal.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from bench.child import REPO_ROOT, run_in_child
from bench.registry import Context, Outcome
from bench.sweeps import sweep_side

SLOTS = {"full": dict(experiment="quickstart", overrides={}),
         "tiny": dict(experiment="quickstart",
                      overrides={"train": {"synthetic_images": 16, "synthetic_size": 32,
                                           "width": 4},
                                 "search": {"trials": 3, "startup_trials": 2, "probe_steps": 2},
                                 "scheduler": {"max_epochs": 1, "grace_period": 1},
                                 "wandb": {"enabled": False}})}
GOAL = 0.9  # effective concurrency >= 0.9 x configured
RAW_TIMEOUT = 1800


def experiment_values(s: dict) -> dict:
    values = yaml.safe_load((REPO_ROOT / "experiments" / f"{s['experiment']}.yaml").read_text())
    for section, changes in s["overrides"].items():
        values[section] = {**(values.get(section) or {}), **changes}
    return values


def run(ctx: Context) -> Outcome:
    from sweep.rundir import read_statuses
    from sweep.timeline import trial_timeline

    s = SLOTS["tiny" if ctx.tiny else "full"]
    values = experiment_values(s)
    sweep = sweep_side(ctx, values, "slots_sweep")
    run_dir = Path(sweep["run_dir"])
    statuses = read_statuses(run_dir)
    concurrency = int(values["search"]["concurrency"])
    product = trial_timeline(statuses, concurrency)
    raw = raw_side(ctx, run_dir, statuses, concurrency)
    value = product["effective_concurrency"] / concurrency
    return Outcome(
        ratio=value, met=value >= GOAL,
        headline=f"effective concurrency {product['effective_concurrency']:.2f} of "
                 f"{concurrency} ({value:.2f}); overhead vs ideal "
                 f"{product['overhead_vs_ideal']:.2f} (raw Tune on the same work "
                 f"{raw['overhead_vs_ideal']:.2f})",
        figures={"sweep": {**summary(product), "sweep_s": sweep["sweep_s"],
                           "best_val_dice": sweep["best_val_dice"], "counts": sweep["counts"]},
                 "raw_tune": raw, "setup": s},
        notes=[f"experiments/{s['experiment']}.yaml as shipped"
               + (f" with {s['overrides']}" if s["overrides"] else "")
               + f"; raw = the same {len(product['rows'])} trials (settings, epochs each ran) "
                 f"as a plain Tune run (function trainable over training.loop.train, "
                 f"reuse_actors=True, no searcher, no early stopping), {concurrency} at a time; "
                 f"effective concurrency = sum of epoch compute / wall (first placement to "
                 f"last end); overhead vs ideal = wall / (compute / concurrency)"])


def summary(timeline: dict) -> dict:
    return {k: v for k, v in timeline.items() if k != "rows"}


def replay(run_dir: Path, statuses: dict) -> tuple[dict, list[dict]]:
    """The sweep's experiment and each trial's full training settings for the epochs it ran."""
    from sweep.experiment import load_experiment
    from sweep.rundir import EXPERIMENT_FILE

    experiment = load_experiment(run_dir / EXPERIMENT_FILE)
    trials = []
    for entry in statuses.values():
        if entry.get("epochs"):
            config = experiment.trial_config(entry["config"], out_dir="").to_dict()
            trials.append({**config, "epochs": int(entry["epochs"])})
    return experiment.to_dict(), trials


def raw_side(ctx: Context, run_dir: Path, statuses: dict, concurrency: int) -> dict:
    experiment, trials = replay(run_dir, statuses)
    kwargs = {"experiment": experiment, "trials": trials, "concurrency": concurrency,
              "storage": str((ctx.work_dir / "raw").resolve()),  # Ray needs an absolute path
              "num_cpus": os.cpu_count()}
    if ctx.tiny:
        return run_raw(**kwargs)
    return run_in_child("bench.slots:run_raw", kwargs, ctx.work_dir, "raw", RAW_TIMEOUT)


def run_raw(experiment: dict, trials: list[dict], concurrency: int, storage: str,
            num_cpus: int | None = None) -> dict:
    """Plain Ray Tune on a list of training configs; ray.init (when needed) not timed."""
    import ray
    from ray import tune

    from training.config import TrainConfig

    owned = not ray.is_initialized()
    if owned:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
    try:
        data = TrainConfig.from_dict(trials[0]).load_data()
        resources = experiment["resources"]
        cpus = resources["cpus"] + trials[0]["num_workers"] * resources["worker_cpus"]
        trainable = tune.with_resources(tune.with_parameters(raw_trial, data=data, trials=trials),
                                        {"cpu": cpus, "gpu": resources["gpus"]})
        tuner = tune.Tuner(trainable, param_space={"index": tune.grid_search(
            list(range(len(trials))))}, tune_config=tune.TuneConfig(
                max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="raw", verbose=0))
        began = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - began
    finally:
        if owned:
            ray.shutdown()
    compute = sum(float(r.metrics_dataframe["epoch_seconds"].sum()) for r in results)
    return {"wall_s": wall, "compute_s": compute, "trials": len(trials),
            "effective_concurrency": compute / wall,
            "overhead_vs_ideal": wall * concurrency / compute}


def raw_trial(config: dict, data, trials: list[dict]) -> None:
    import tempfile

    from ray import tune

    from training.config import TrainConfig
    from training.loop import train

    with tempfile.TemporaryDirectory() as folder:
        settings = TrainConfig.from_dict({**trials[config["index"]], "out_dir": folder})
        train(settings, data, report=lambda metrics, state: tune.report(metrics))
