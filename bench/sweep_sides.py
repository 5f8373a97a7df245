"""The sides of the sweep benchmarks: a whole sweep through the product's own runner
(``sweep.runner.run_experiment``), and the same trainings as plain ``python -m sweep train``
processes. A sweep side runs in a fresh child process in full mode (its own Ray), in the
calling process in tiny mode (joining a Ray session already up, e.g. the test suite's)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.child import REPO_ROOT, BenchError


def experiment_values(name: str, train: dict, space: dict, *, trials: int, concurrency: int,
                      max_epochs: int, grace_period: int, reduction_factor: float = 2.0,
                      seed: int = 0, startup_trials: int = 10, cpus: float = 1.0,
                      wandb: dict | None = None) -> dict:
    """An experiment as its YAML file would hold it."""
    return {"name": name, "train": train, "space": space,
            "search": {"trials": trials, "concurrency": concurrency, "seed": seed,
                       "startup_trials": startup_trials},
            "scheduler": {"max_epochs": max_epochs, "grace_period": grace_period,
                          "reduction_factor": reduction_factor},
            "resources": {"cpus": cpus, "gpus": 0},
            "wandb": wandb if wandb is not None else {"enabled": False}}


def run_sweep(values: dict, runs_dir: str, num_cpus: int | None = None,
              object_store_mb: int | None = None) -> dict:
    """One sweep through the product's runner. Ray is started here (and timed apart) unless a
    session is already up: ``ray.init`` is paid once per session, whatever the sweep.
    ``object_store_mb`` caps Ray's object store (a Ray started here only)."""
    import ray

    from sweep.experiment import Experiment
    from sweep.runner import run_experiment

    experiment = Experiment.from_dict(values, f"bench experiment {values['name']}")
    owned = not ray.is_initialized()
    began = time.perf_counter()
    if owned:
        store = {"object_store_memory": object_store_mb * 2**20} if object_store_mb else {}
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, **store)
    ray_init_s = time.perf_counter() - began
    try:
        began = time.perf_counter()
        summary = run_experiment(experiment, runs_dir, fresh=True)
        sweep_s = time.perf_counter() - began
    finally:
        if owned:
            ray.shutdown()
    return {"ray_init_s": ray_init_s, "sweep_s": sweep_s, "run_dir": str(summary.run_dir),
            "counts": dict(summary.counts), "best_val_dice": summary.best_val_dice}


def trial_config_file(values: dict, params: dict, out_dir: Path) -> Path:
    """The training config a trial of this experiment gets, as a YAML file for `train`."""
    from sweep.experiment import Experiment

    experiment = Experiment.from_dict(values, f"bench experiment {values['name']}")
    config = experiment.trial_config(params, out_dir=str(out_dir)).to_dict()
    path = out_dir.with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def run_plain(config_files: list[Path], concurrency: int, log_dir: Path,
              timeout: float = 3600) -> float:
    """Wall time of `python -m sweep train --config F` for every F, ``concurrency`` at a time
    (each process pays its own imports and data decoding, as a user's script would)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running = list(config_files), []
    began = time.perf_counter()
    while pending or running:
        while pending and len(running) < concurrency:
            config = pending.pop(0)
            log = (log_dir / f"{config.stem}.log").open("w")
            process = subprocess.Popen([sys.executable, "-m", "sweep", "train", "--config",
                                        str(config)], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=REPO_ROOT)
            running.append((process, log, config))
        for item in list(running):
            process, log, config = item
            if process.poll() is not None:
                log.close()
                running.remove(item)
                if process.returncode != 0:
                    raise BenchError(f"plain training {config.name} failed (exit "
                                     f"{process.returncode}); log: {log.name}")
        if time.perf_counter() - began > timeout:
            for process, _, _ in running:
                process.kill()
            raise BenchError(f"plain trainings ran past {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - began
