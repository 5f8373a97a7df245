"""Seeds, the honest way: rerun a sweep's top-k configurations with new seeds, all epochs, no
early stopping, and record mean, std and n per configuration in confirm.json, so a report can
say whether the winner beats seed noise."""
from __future__ import annotations

import itertools
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from sweep import runlock
from sweep.diskspace import StopWhenDiskFull
from sweep.experiment import load_saved_experiment
from sweep.outage import StopWhenStorageUnreachable
from sweep.ray_session import fit, start_ray, stop_ray
from sweep.rundir import (
    COMPLETE,
    CONFIRM_DIR,
    CONFIRM_FILE,
    EXPERIMENT_FILE,
    SCORED,
    TUNE_DIR,
    TrialStorage,
    read_statuses,
    read_trials,
    storage_of,
    write_json,
)
from sweep.search import load_data_for, make_trainable, quiet_tune, reuse_actors, run_config
from training.settings import ConfigError

log = logging.getLogger(__name__)

FIRST_NEW_SEED = 10_000  # above the seeds a sweep's space usually spans


@dataclass
class Candidate:
    params: dict  # the trial's searched settings without its seed
    source_trial: str
    sweep_value: float


def top_candidates(run_dir: Path, top_k: int) -> list[Candidate]:
    """The best distinct configurations (seed aside), finished trials before pruned ones."""
    statuses = read_statuses(run_dir)
    ranked = []
    for record in read_trials(storage_of(run_dir), TUNE_DIR):
        status = statuses.get(record.trial_id, {}).get("status")
        if status in SCORED and record.best_value() is not None:
            ranked.append((status == COMPLETE, record.best_value(), record))
    ranked.sort(key=lambda item: item[:2], reverse=True)
    chosen: list[Candidate] = []
    for _, value, record in ranked:
        params = {k: v for k, v in record.params.items() if k != "seed"}
        if params not in [c.params for c in chosen]:
            chosen.append(Candidate(params, record.trial_id, value))
    return chosen[:top_k]


def new_seeds(run_dir: Path, count: int, sweep_seeds: list[int] = ()) -> list[int]:
    used = {record.params.get("seed") for record in read_trials(storage_of(run_dir), TUNE_DIR)}
    used.update(sweep_seeds)  # the seeds every trial trained (search.seeds)
    return list(itertools.islice((s for s in itertools.count(FIRST_NEW_SEED) if s not in used),
                                 count))


def confirm_run(run_dir: str | Path, top_k: int | None = None, seeds: int | None = None) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_FILE).is_file():
        raise ConfigError(f"{run_dir}: no sweep here (no {EXPERIMENT_FILE})")
    with runlock.hold(run_dir):  # never beside a live run or resume of the same sweep
        return confirm_locked(run_dir, top_k, seeds)


def confirm_locked(run_dir: Path, top_k: int | None, seeds: int | None) -> dict:
    experiment = load_saved_experiment(run_dir / EXPERIMENT_FILE)
    top_k = top_k or experiment.confirm.top_k
    candidates = top_candidates(run_dir, top_k)
    if not candidates:
        raise ConfigError(f"{run_dir}: no finished trial to confirm")
    seed_list = new_seeds(run_dir, seeds or experiment.confirm.seeds, experiment.seeds())
    storage = storage_of(run_dir)  # the sweep's trial storage: confirm/ goes beside tune/
    storage.delete(CONFIRM_DIR)  # a rerun replaces the last one
    data = load_data_for(experiment)
    connection = start_ray(experiment)
    quiet_tune()
    again = f"python -m sweep confirm {run_dir}"  # a confirm starts over: nothing to resume
    try:
        tuner = tune.Tuner(
            make_trainable(experiment, storage, data, candidates=[c.params for c in candidates]),
            param_space={"candidate": tune.grid_search(list(range(len(candidates)))),
                         "seed": tune.grid_search(seed_list)},
            tune_config=tune.TuneConfig(max_concurrent_trials=experiment.search.concurrency,
                                        reuse_actors=reuse_actors()),
            run_config=run_config(storage, CONFIRM_DIR,
                                  [StopWhenDiskFull(run_dir, storage, CONFIRM_DIR),
                                   StopWhenStorageUnreachable(run_dir, storage, again)],
                                  experiment.search.max_failures))
        fit(tuner, run_dir, storage, again)
    finally:
        stop_ray(connection)
    result = collect(storage, candidates, seed_list, experiment.scheduler.max_epochs)
    write_json(run_dir / CONFIRM_FILE, result)
    return result


def collect(storage: TrialStorage, candidates: list[Candidate], seed_list: list[int],
            epochs: int) -> dict:
    """Per candidate: each new seed's best val_dice (as the sweep scores a trial)."""
    scores: dict[int, dict[int, float]] = {i: {} for i in range(len(candidates))}
    for record in read_trials(storage, CONFIRM_DIR):
        if record.best_value() is not None:
            scores[record.params["candidate"]][record.params["seed"]] = record.best_value()
    configs = []
    for index, candidate in enumerate(candidates):
        seeds = sorted(scores[index])
        values = [scores[index][s] for s in seeds]
        configs.append({
            "config": candidate.params, "seeds": seeds, "val_dice": values,
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "source_trial": candidate.source_trial,
            "sweep_val_dice": candidate.sweep_value})
    return {"configs": configs, "epochs": epochs, "seeds": seed_list}


def confirm_text(result: dict) -> str:
    lines = [f"confirm: {len(result['configs'])} configurations x {len(result['seeds'])} new "
             f"seeds, {result['epochs']} epochs each, no early stopping"]
    for entry in result["configs"]:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in entry["config"].items())
        mean = f"{entry['mean']:.4f}" if entry["mean"] is not None else "n/a"
        lines.append(f"  val_dice {mean} +- {entry['std']:.4f} (n={entry['n']}; sweep "
                     f"{entry['sweep_val_dice']:.4f}, trial {entry['source_trial']}): {params}")
    return "\n".join(lines)
