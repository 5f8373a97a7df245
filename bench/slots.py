"""The `slots` benchmark (issues 16, 22): how busy a sweep keeps its slots, beside raw Ray Tune on
the same work, both timed over the same two windows.

- sweep: an experiment as shipped (quickstart in full mode) through the product's runner; from
  its trial_status.json clock: effective concurrency (sum of epoch compute / wall of the trials,
  first placement to last end), overhead vs the ideal (wall / (compute / concurrency)),
  median start-up and gap;
- raw: the same trials (each one's settings, for the epochs it ran, the same seeds per trial
  side by side, no early stopping) replayed by a plain Ray Tune run: a function trainable over
  ``training.replicates.train_replicates``, reuse_actors=True, the same concurrency, CPUs per
  trial and data path (the decoded cache, handed over by ``tune.with_parameters``);
- both windows for both sides: the trials only (first trial start to last end), and the whole
  command (from the start of the process that runs it: imports, ``ray.init``, data, the speed
  probe and Tune's own start and stop included), whose effective concurrency is what a user
  waiting for the sweep gets.

Each repeat runs the sweep, then raw Tune on that sweep's trials; figures are min/median/max.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from bench.child import REPO_ROOT, run_in_child
from bench.measure import spread
from bench.registry import Context, Outcome
from bench.sweeps import sweep_side

SLOTS = {"full": dict(experiment="quickstart", overrides={}, repeats=3),
         "tiny": dict(experiment="quickstart",
                      overrides={"train": {"synthetic_images": 16, "synthetic_size": 32,
                                           "width": 4},
                                 "search": {"trials": 3, "startup_trials": 2, "probe_steps": 2},
                                 "scheduler": {"max_epochs": 1, "grace_period": 1},
                                 "wandb": {"enabled": False}}, repeats=1)}
GOAL = 0.9  # effective concurrency >= 0.9 x configured
RAW_TIMEOUT = 1800
# Per-repeat figures summarised as min/median/max over the repeats.
SPREAD_KEYS = ("effective_concurrency", "whole_sweep_effective_concurrency",
               "overhead_vs_ideal", "wall_s", "command_s", "compute_s")


def experiment_values(s: dict) -> dict:
    values = yaml.safe_load((REPO_ROOT / "experiments" / f"{s['experiment']}.yaml").read_text())
    for section, changes in s["overrides"].items():
        values[section] = {**(values.get(section) or {}), **changes}
    return values


def run(ctx: Context) -> Outcome:
    s = SLOTS["tiny" if ctx.tiny else "full"]
    values = experiment_values(s)
    concurrency = int(values["search"]["concurrency"])
    runs = [one_repeat(ctx, values, concurrency, repeat)
            for repeat in range(ctx.repeats or s["repeats"])]
    sweep = summarise([r["sweep"] for r in runs], ("median_startup_s", "median_gap_s"))
    raw = summarise([r["raw_tune"] for r in runs], ("fit_s",))
    last = runs[-1]["sweep"]
    sweep.update(concurrency=concurrency, seeds_per_trial=last["seeds_per_trial"],
                 counts=last["counts"], best_val_dice=last["best_val_dice"])
    raw.update(trials=runs[-1]["raw_tune"]["trials"],
               seeds_per_trial=runs[-1]["raw_tune"]["seeds_per_trial"])
    value = sweep["effective_concurrency"]["median"] / concurrency
    return Outcome(
        ratio=value, met=value >= GOAL,
        headline=f"effective concurrency {sweep['effective_concurrency']['median']:.2f} of "
                 f"{concurrency} ({value:.2f}; "
                 f"{sweep['whole_sweep_effective_concurrency']['median']:.2f} from the "
                 f"command's start); overhead vs ideal {sweep['overhead_vs_ideal']['median']:.2f}"
                 f" (raw Tune, same trials and seeds: "
                 f"{raw['overhead_vs_ideal']['median']:.2f})",
        figures={"sweep": sweep, "raw_tune": raw,
                 "whole_sweep_effective_concurrency": sweep["whole_sweep_effective_concurrency"],
                 "runs": runs, "setup": s},
        notes=[f"experiments/{s['experiment']}.yaml as shipped"
               + (f" with {s['overrides']}" if s["overrides"] else "")
               + f"; raw = the same {raw['trials']} trials (settings, epochs each ran, "
                 f"{raw['seeds_per_trial']} seed(s) per trial side by side as the sweep's "
                 f"{sweep['seeds_per_trial']}) as a plain Tune run (function trainable over "
                 f"training.replicates.train_replicates, reuse_actors=True, no searcher, no "
                 f"early stopping), {concurrency} at a time; {len(runs)} repeat(s), each the "
                 f"sweep then raw Tune on its trials",
               "effective concurrency = sum of epoch compute / wall; wall of the trials: "
               "first placement (raw: first trial function start) to last end; whole sweep: "
               "from the start of the process that runs the command (imports, ray.init, data, "
               "speed probe, Tune start and stop included); overhead vs ideal = trials' wall "
               "/ (compute / concurrency)"])


def one_repeat(ctx: Context, values: dict, concurrency: int, repeat: int) -> dict:
    from sweep.rundir import read_statuses
    from sweep.timeline import trial_timeline

    began = time.perf_counter()
    sweep = sweep_side(ctx, values, f"slots_sweep{repeat}")
    command_s = time.perf_counter() - began
    run_dir = Path(sweep["run_dir"])
    statuses = read_statuses(run_dir)
    product = {k: v for k, v in trial_timeline(statuses, concurrency).items() if k != "rows"}
    product.update(command_s=command_s, sweep_s=sweep["sweep_s"], ray_init_s=sweep["ray_init_s"],
                   whole_sweep_effective_concurrency=product["compute_s"] / command_s,
                   seeds_per_trial=int(values["search"].get("seeds", 1)),
                   counts=sweep["counts"], best_val_dice=sweep["best_val_dice"])
    raw = raw_side(ctx, run_dir, statuses, concurrency, repeat)
    return {"sweep": product, "raw_tune": raw}


def summarise(runs: list[dict], extra: tuple[str, ...]) -> dict:
    keys = [k for k in (*SPREAD_KEYS, *extra) if all(r.get(k) is not None for r in runs)]
    return {k: spread([float(r[k]) for r in runs]) for k in keys}


def replay(run_dir: Path, statuses: dict) -> tuple[dict, list[dict]]:
    """The sweep's experiment and each trial's full training settings for the epochs it ran,
    with the seeds the sweep trained it with."""
    from sweep.experiment import load_experiment
    from sweep.rundir import EXPERIMENT_FILE

    experiment = load_experiment(run_dir / EXPERIMENT_FILE)
    trials = []
    for entry in statuses.values():
        if entry.get("epochs"):
            config = experiment.trial_config(entry["config"], out_dir="").to_dict()
            trials.append({**config, "epochs": int(entry["epochs"]),
                           "seeds": experiment.seeds()})
    return experiment.to_dict(), trials


def raw_side(ctx: Context, run_dir: Path, statuses: dict, concurrency: int,
             repeat: int = 0) -> dict:
    experiment, trials = replay(run_dir, statuses)
    kwargs = {"experiment": experiment, "trials": trials, "concurrency": concurrency,
              "storage": str((ctx.work_dir / f"raw{repeat}").resolve()),  # Ray: absolute path
              "num_cpus": os.cpu_count()}
    began = time.perf_counter()
    if ctx.tiny:
        raw = run_raw(**kwargs)
    else:
        raw = run_in_child("bench.slots:run_raw", kwargs, ctx.work_dir, f"raw{repeat}",
                           RAW_TIMEOUT)
    raw["command_s"] = time.perf_counter() - began
    raw["whole_sweep_effective_concurrency"] = raw["compute_s"] / raw["command_s"]
    return raw


def run_raw(experiment: dict, trials: list[dict], concurrency: int, storage: str,
            num_cpus: int | None = None) -> dict:
    """Plain Ray Tune on a list of training configs (each with its seeds)."""
    import ray
    from ray import tune

    from training.config import TrainConfig

    owned = not ray.is_initialized()
    if owned:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
    try:
        first = {k: v for k, v in trials[0].items() if k != "seeds"}
        data = TrainConfig.from_dict(first).load_data()
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
        fit_s = time.perf_counter() - began
    finally:
        if owned:
            ray.shutdown()
    frames = [r.metrics_dataframe for r in results]
    compute = sum(float(f["epoch_seconds"].sum()) for f in frames)
    # The trials' window, as the product's: first trial start to last epoch's end.
    wall = (max(float(f["epoch_ended_at"].max()) for f in frames)
            - min(float(f["began_at"].min()) for f in frames))
    return {"fit_s": fit_s, "wall_s": wall, "compute_s": compute, "trials": len(trials),
            # Counted from what the trials reported (one val_dice_seed<S> per seed trained).
            "seeds_per_trial": max(1, sum(c.startswith("val_dice_seed") for c in frames[0])),
            "effective_concurrency": compute / wall,
            "overhead_vs_ideal": wall * concurrency / compute}


def raw_trial(config: dict, data, trials: list[dict]) -> None:
    import tempfile

    from ray import tune

    from training.config import TrainConfig
    from training.replicates import train_replicates

    began = time.time()
    trial = trials[config["index"]]
    settings = {k: v for k, v in trial.items() if k != "seeds"}

    def report(metrics: dict, states) -> None:
        tune.report({**metrics, "began_at": began, "epoch_ended_at": time.time()})

    with tempfile.TemporaryDirectory() as folder:
        configs = [TrainConfig.from_dict({**settings, "seed": seed,
                                          "out_dir": f"{folder}/seed{seed}"})
                   for seed in trial["seeds"]]
        train_replicates(configs, data, report=report)
