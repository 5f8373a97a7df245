"""The searched parameters and their ranges, read from experiment.yaml or, failing that, from the
Optuna study's distributions. The report needs them for edge warnings and log axes."""
from __future__ import annotations

import math
from dataclasses import dataclass

from sweep.distributions import to_distribution

# Settings that change speed, never results (the loader is num_workers-invariant by design).
# Not torch threads: the reduction order, and so the last bits of a result, depend on them.
SPEED_ONLY = ("num_workers", "pin_memory")
# Settings whose effect is noise, not quality: grouped away in the seed-aware ranking.
NOISE = ("seed",)

@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def numeric_range(self) -> tuple[float, float] | None:
        """(low, high) for numbers, also for a choice of numbers (say batch_size 2/4/8)."""
        if self.kind != "choice":
            return (self.low, self.high)
        numbers = [c for c in self.choices if isinstance(c, (int, float))
                   and not isinstance(c, bool)]
        if len(numbers) == len(self.choices) and len(numbers) >= 2:
            return (min(numbers), max(numbers))
        return None

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        scale = "log " if self.log else ""
        return f"{scale}{self.kind} in [{self.low:g}, {self.high:g}]"


def space_from_experiment(experiment: dict) -> dict[str, ParamSpec]:
    """Parse experiment.yaml's ``space:`` (``{name: {kind: bounds}}``, as the sweep writes it),
    through the same conversion the sweep hands Optuna. A damaged entry is skipped (the study
    fills in)."""
    table = experiment.get("space")
    specs = {}
    for name, entry in (table if isinstance(table, dict) else {}).items():
        try:
            specs[str(name)] = spec_from_distribution(str(name), to_distribution(entry))
        except (AttributeError, IndexError, StopIteration, TypeError, ValueError):
            continue
    return specs


def space_from_study(study) -> dict[str, ParamSpec]:
    """The distributions Optuna recorded for the study's trials (the searcher's own view)."""
    specs: dict[str, ParamSpec] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            specs.setdefault(name, spec_from_distribution(name, dist))
    return specs


def spec_from_distribution(name: str, dist) -> ParamSpec:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return ParamSpec(name, "choice", choices=tuple(dist.choices))
    kind = "int" if isinstance(dist, IntDistribution) else "float"
    return ParamSpec(name, kind, dist.low, dist.high, dist.log)


def position_in_range(spec: ParamSpec, value) -> float | None:
    """Where ``value`` sits in the range, 0 = low edge, 1 = high edge (log scale when log)."""
    bounds = spec.numeric_range
    if bounds is None or not isinstance(value, (int, float)) or bounds[0] == bounds[1]:
        return None
    low, high = bounds
    if spec.log and low > 0 and value > 0:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low)
