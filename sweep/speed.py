"""Speed knobs (num_workers, pin_memory) are fixed before the sweep, not searched.

They cannot change results (the loader is num_workers-invariant, tested), so trials spent on
them teach TPE nothing, and trials of different num_workers reserve different CPUs: Tune can
then neither reuse one trial's actor for the next nor fit two shapes side by side. A short probe
(``training.throughput``: a few dozen steps per candidate, in the driver, before Ray starts any
trial) measures each candidate; the fastest one whose reservation still lets ``concurrency``
trials run at once is fixed for every trial, and a loader worker reserves the CPU it was
measured to use (``resources.worker_cpus``), not a whole core. The table goes to
``speed_probe.json`` (the report and W&B read it); the applied experiment to experiment.yaml.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time

from sweep.experiment import SPEED_KNOBS, Experiment

log = logging.getLogger(__name__)

NOISE = 0.05  # a candidate this close to a cheaper one is not faster: the cheaper one wins
MIN_WORKER_CPUS = 0.05  # a worker reserves at least this much (Ray's unit is 0.0001)


def candidates(experiment: Experiment, cuda: bool) -> list[dict]:
    """Every combination of the speed knobs the experiment lists (fixed ones: their value).
    pin_memory only acts on CUDA: on a CPU its first value is kept unmeasured."""
    values = {}
    for knob in SPEED_KNOBS:
        spec = experiment.space.get(knob)
        if not spec:
            values[knob] = [getattr(experiment.train, knob)]
            continue
        (kind, bounds), = spec.items()
        values[knob] = list(range(bounds[0], bounds[1] + 1)) if kind == "int" else list(bounds)
    if not cuda:
        values["pin_memory"] = values["pin_memory"][:1]
    return [dict(zip(SPEED_KNOBS, combo)) for combo in itertools.product(*values.values())]


def worker_cpus(worker_cpu_per_s: float, workers: int) -> float:
    """What one loader worker reserves: its measured CPU use, rounded up to 0.05."""
    if not workers:
        return 0.0
    share = math.ceil(worker_cpu_per_s / workers / MIN_WORKER_CPUS) * MIN_WORKER_CPUS
    return round(min(1.0, max(MIN_WORKER_CPUS, share)), 2)


def slots(reserve: float, total_cpus: float) -> int:
    return math.floor(total_cpus / reserve + 1e-9)


def choose(rows: list[dict], cpus: float, concurrency: int, total_cpus: float) -> dict:
    """The fastest row whose reservation (cpus + num_workers x its worker_cpus) still fits
    ``concurrency`` trials at once (as many as Ray's CPUs allow with no worker at all); among
    rows within NOISE of it, the one reserving least. Marks every row's ``fits``."""
    wanted = min(concurrency, slots(cpus, total_cpus))
    for row in rows:
        row["reserve_cpus"] = round(cpus + row["num_workers"] * row["worker_cpus"], 4)
        row["fits"] = slots(row["reserve_cpus"], total_cpus) >= wanted
    fitting = [r for r in rows if r["fits"]] or rows
    fastest = max(r["samples_per_s"] for r in fitting)
    near = [r for r in fitting if r["samples_per_s"] >= (1 - NOISE) * fastest]
    return min(near, key=lambda r: (r["reserve_cpus"], -r["samples_per_s"]))


def probe_batch_size(experiment: Experiment) -> int:
    """The batch size the probe trains with: the searched choices' middle one, else fixed."""
    spec = experiment.space.get("batch_size")
    if not spec:
        return experiment.train.batch_size
    (kind, bounds), = spec.items()
    values = sorted(bounds) if kind == "choice" else list(bounds)
    return int(values[len(values) // 2])


def run_probe(experiment: Experiment, data, total_cpus: float, steps: int) -> dict:
    """Measure every candidate (when there is a choice) and pick one. The record it returns is
    what speed_probe.json holds."""
    from training.determinism import resolve_device
    from training.throughput import probe_throughput

    cuda = resolve_device(experiment.train.device).type == "cuda"
    options = candidates(experiment, cuda)
    record = {"steps": steps, "batch_size": probe_batch_size(experiment), "rows": [],
              "total_cpus": total_cpus, "concurrency": experiment.search.concurrency}
    if len(options) == 1 or steps <= 0:
        record.update(chosen=options[0], worker_cpus=experiment.resources.worker_cpus,
                      reason="one candidate: nothing to measure" if len(options) == 1
                      else "probe off (search.probe_steps = 0): the first candidate")
        return record
    began = time.perf_counter()
    for option in options:
        config = experiment.trial_config({**option, "batch_size": record["batch_size"]},
                                         out_dir="")
        measured = probe_throughput(config, data, steps)
        record["rows"].append({**option, "samples_per_s": round(measured["samples_per_s"], 2),
                               "worker_cpu_per_s": round(measured["worker_cpu_per_s"], 3),
                               "worker_cpus": worker_cpus(measured["worker_cpu_per_s"],
                                                          option["num_workers"])})
    best = choose(record["rows"], experiment.resources.cpus, experiment.search.concurrency,
                  total_cpus)
    record.update(chosen={k: best[k] for k in SPEED_KNOBS}, worker_cpus=best["worker_cpus"]
                  or experiment.resources.worker_cpus, seconds=time.perf_counter() - began,
                  reason="fastest whose reservation fits the concurrency")
    return record


def apply(experiment: Experiment, record: dict) -> Experiment:
    """The experiment every trial runs: speed knobs fixed in train, gone from the space (TPE
    never models them), loader workers reserved at their measured CPU."""
    space = {k: v for k, v in experiment.space.items() if k not in SPEED_KNOBS}
    train = experiment.train.replace(**record["chosen"])
    resources = dataclasses.replace(experiment.resources, worker_cpus=record["worker_cpus"])
    return dataclasses.replace(experiment, space=space, train=train, resources=resources)


def fix_speed_knobs(experiment: Experiment, data, total_cpus: float) -> tuple[Experiment, dict]:
    record = run_probe(experiment, data, total_cpus, experiment.search.probe_steps)
    for row in record["rows"]:
        log.info("speed probe: num_workers=%d pin_memory=%s  %.1f samples/s, workers use "
                 "%.2f CPU, trial reserves %.2f CPU%s", row["num_workers"], row["pin_memory"],
                 row["samples_per_s"], row["worker_cpu_per_s"], row["reserve_cpus"],
                 "" if row["fits"] else f" (too much for {record['concurrency']} at once)")
    log.info("speed knobs for every trial: %s (%s)", record["chosen"], record["reason"])
    return apply(experiment, record), record
