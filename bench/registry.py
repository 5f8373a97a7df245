"""The benchmarks by name. Each entry points at a ``run(context) -> Outcome`` function, imported
only when that benchmark runs (so listing them, or running one, loads nothing the others need)."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Benchmark:
    name: str
    what: str
    goal: str
    target: str  # "module:function" taking a Context, returning an Outcome
    needs: str = "cpu"  # cpu | gpu (gpu ones are left out of a plain `bench`)

    def load(self) -> Callable[[Context], Outcome]:
        module_name, _, function_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), function_name)


@dataclass
class Context:
    tiny: bool  # tiny mode proves the code runs; its figures mean nothing
    work_dir: Path  # scratch space for this benchmark (under bench/out/)
    repeats: int | None = None  # override the benchmark's own number of repeats


@dataclass
class Outcome:
    ratio: float  # the headline figure
    headline: str  # the figure in words, e.g. "ours 1.8x the reference's samples/s"
    met: bool | None  # goal met? None where the goal is not a threshold
    figures: dict = field(default_factory=dict)  # every number behind the headline
    notes: list[str] = field(default_factory=list)  # how it was measured, caveats, misses


BENCHMARKS = {b.name: b for b in [
    Benchmark("loop", "training samples/s of our loop vs a Pytorch-UNet-style reference loop "
              "(same model, width, data, batch size, epochs); val_dice of both",
              ">= 1.5x", "bench.loop:run"),
    Benchmark("overhead", "wall time of an N-trial sweep vs the same trainings as plain "
              "processes at the same concurrency", "<= 1.10", "bench.sweeps:run_overhead"),
    Benchmark("search-dev", "every search method replayed in the shipped mode on the "
              "development learning-curve tables and search seeds (bench/lc_search.py): the "
              "ranking that picks the shipped default", "names the best method",
              "bench.lc_search:run_development"),
    Benchmark("search", "the shipped search method vs random search (and random + ASHA) on the "
              "held-out tables and search seeds, in the shipped mode at concurrency 1, 2, 4: "
              "trial-epochs until the returned configuration's held-out-seed mean is in the "
              "top 5 %", ">= 3x fewer than random (90 % CI >= 2x), >= 1.25x fewer than random "
              "+ ASHA", "bench.lc_search:run"),
    Benchmark("warm-start", "the shipped search method warm-started (search.warm_start's "
              "rule) from a 16-trial search of a neighbouring table (unet_thin -> unet_crisp, "
              "unet_crop) and of the same table vs a cold start, replayed at concurrency 2 on "
              "the held-out search seeds: trial-epochs to the top-5 % target",
              "warm from a neighbour: fewer trial-epochs (90 % CI above 1x)",
              "bench.lc_warm:run"),
    Benchmark("pareto-dev", "multi-objective search variants (MO-ASHA, TPE, NSGA-II, random) "
              "replayed on the development learning-curve table and search seeds, val_dice vs "
              "seconds per epoch (bench/lc_pareto.py): the ranking behind the Pareto defaults",
              "names the best method", "bench.lc_pareto:run_development"),
    Benchmark("pareto", "MO-ASHA + multi-objective TPE (experiments/quickstart_pareto.yaml) vs "
              "random search without stopping on the held-out tables and search seeds, "
              "reproducible mode, concurrency 1, 2, 4: trial-epochs until the returned front "
              "holds 80 % of the table's best hypervolume (val_dice vs seconds per epoch)",
              ">= 2x fewer than random", "bench.lc_pareto:run"),
    Benchmark("search-live", "the replay's top two search methods as real sweeps (the live "
              "loop, not the table) on the table's problem: trial-epochs to a target, 3 seeds",
              "the replay's ranking holds", "bench.lc_live:run"),
    Benchmark("memory", "peak memory of a sweep with 1, 2 (and 4) concurrent trials, on a big "
              "and a small data set: the data set is held once",
              "per-trial growth ~ model + activations (< 1/2 data set grows with the data)",
              "bench.sweeps:run_memory"),
    Benchmark("wandb", "the same sweep with and without W&B mirroring", "<= 1.05",
              "bench.sweeps:run_wandb"),
    Benchmark("cache", "training samples/s from the memory-mapped decoded cache (page cache "
              "warm, and cold every epoch) vs the same pixels in RAM; cache build rate and size",
              ">= 0.95x", "bench.cache_bench:run"),
    Benchmark("costs", "the cost metrics of every epoch's row (latencies, peak memory, params, "
              "FLOPs) on the tests' tiny model and experiments/smoke.yaml's: their medians, "
              "their noise over runs and rows, the load they were measured under, and what "
              "measuring them costs per epoch", "measurement <= 5 % of a later epoch (median, "
              "smoke model)", "bench.costs_bench:run"),
    Benchmark("slots", "effective concurrency of a shipped sweep (epoch compute / wall) and its "
              "overhead vs the ideal, beside raw Ray Tune replaying the same trials",
              ">= 0.9 x concurrency", "bench.slots:run"),
    Benchmark("modes", "wall time of the quickstart sweep in reproducible mode vs async (same "
              "experiment otherwise)", "<= 1.15x", "bench.sweeps:run_modes"),
    Benchmark("gpu", "bf16 AMP + channels_last vs float32 and vs the reference loop; 1, 2, 4 "
              "trainings sharing the GPU", ">= 2x; >= 2.5x", "bench.gpu_bench:run",
              needs="gpu"),
]}

# Commands of `python -m bench` that are not benchmarks: name -> ("module:main", what it does).
COMMANDS = {
    "docs": ("bench.docs:main", "write docs/BENCHMARKS.md and the README's summary from the "
                                "committed results (--check: exit 1 if stale)"),
}


def select(names: list[str]) -> list[Benchmark]:
    """The named benchmarks, or every CPU one when none is named."""
    if not names:
        return [b for b in BENCHMARKS.values() if b.needs == "cpu"]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        from training.settings import ConfigError

        raise ConfigError(f"unknown benchmark(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(BENCHMARKS)}")
    return [BENCHMARKS[n] for n in dict.fromkeys(names)]
