"""Several seeds of one configuration trained side by side, in lockstep epochs: after each epoch
the caller hears the mean over the seeds, their spread and each seed's own val_dice.

Why lockstep inside one run rather than one run per seed: whoever decides on the configuration
(ASHA at a rung, TPE when told) must see all its seeds at the same epoch, and a single run keeps
that without tying runs together. Each seed keeps its own global RNG state between its epochs,
so seed s trains exactly as it would alone (tested)."""
from __future__ import annotations

import statistics
from collections.abc import Callable

from data_pipeline import SegmentationData
from training.checkpoints import restore_rng_state, rng_state
from training.config import TrainConfig
from training.cost_keys import LOAD_INDEPENDENT
from training.loop import EpochState, TrainResult, train_epochs

AVERAGED = ("train_loss", "val_loss", "val_dice", "val_iou", "lr", "samples_per_s",
            "latency_ms", "latency_eval_ms", "latency_ms_spread", "cpu_load")
SPREAD = ("val_dice", "val_iou")  # <key>_std, and <key>_seed<S> per seed

ReplicateReport = Callable[[dict, list[EpochState]], None]


def train_replicates(configs: list[TrainConfig], data: SegmentationData,
                     report: ReplicateReport | None = None) -> list[TrainResult]:
    """Train every config (the same settings, different seeds) one epoch at a time."""
    runs = [train_epochs(config, data) for config in configs]
    states: list[dict | None] = [None] * len(runs)
    results: list[TrainResult | None] = [None] * len(runs)
    while True:
        step = []
        for index, run in enumerate(runs):
            if states[index] is not None:
                restore_rng_state(states[index])  # this seed's RNGs, as it left them
            try:
                step.append(next(run))
            except StopIteration as done:
                results[index] = done.value
            states[index] = rng_state()
        if not step:
            return results
        if report is not None:
            report(combine([m for m, _ in step], [c.seed for c in configs]),
                   [s for _, s in step])


def combine(per_seed: list[dict], seeds: list[int]) -> dict:
    """One seed: its metrics unchanged. Several: means, std and each seed's values."""
    if len(per_seed) == 1:
        return dict(per_seed[0])
    metrics = {"epoch": per_seed[0]["epoch"],
               "epoch_seconds": sum(m["epoch_seconds"] for m in per_seed)}
    if all("train_samples" in m for m in per_seed):  # what the trial trained, every seed
        metrics["train_samples"] = sum(m["train_samples"] for m in per_seed)
    for key in AVERAGED:
        if all(key in m for m in per_seed):
            metrics[key] = statistics.fmean(m[key] for m in per_seed)
    for key in SPREAD:
        metrics[f"{key}_std"] = statistics.stdev(m[key] for m in per_seed)
        for seed, m in zip(seeds, per_seed):
            metrics[f"{key}_seed{seed}"] = m[key]
    for key in ("gpu_peak_mem_mb", "peak_mem_mb"):  # the most any seed needed
        if all(key in m for m in per_seed):
            metrics[key] = max(m[key] for m in per_seed)
    for key in LOAD_INDEPENDENT:  # one architecture: every seed counts the same
        if key in per_seed[0]:
            metrics[key] = per_seed[0][key]
    return metrics
