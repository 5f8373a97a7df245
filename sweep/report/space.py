"""The searched parameters and their ranges, read from experiment.yaml or, failing that, from the
Optuna study's distributions. The report needs them for edge warnings and log axes."""
from __future__ import annotations

import math
from dataclasses import dataclass

# Settings that change speed, never results (the loader is num_workers-invariant by design).
# Not torch threads: the reduction order, and so the last bits of a result, depend on them.
SPEED_ONLY = ("num_workers", "pin_memory")
# Settings whose effect is noise, not quality: grouped away in the seed-aware ranking.
NOISE = ("seed",)

# The kinds sweep/experiment.py's validator allows (SPACE_KINDS): {kind: [low, high]} or
# {choice: [values]}; loguniform is the only log-scaled one.
_NUMERIC_KINDS = {"loguniform": ("float", True), "uniform": ("float", False),
                  "int": ("int", False)}


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
    """Parse experiment.yaml's ``space:`` (``{name: {kind: bounds}}``, as the sweep writes it)."""
    table = experiment.get("space")
    specs = {}
    for name, entry in (table if isinstance(table, dict) else {}).items():
        spec = _parse_entry(str(name), entry)
        if spec is not None:
            specs[spec.name] = spec
    return specs


def space_from_study(study) -> dict[str, ParamSpec]:
    """The distributions Optuna recorded for the study's trials (the searcher's own view)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    specs: dict[str, ParamSpec] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if name in specs:
                continue
            if isinstance(dist, CategoricalDistribution):
                specs[name] = ParamSpec(name, "choice", choices=tuple(dist.choices))
            else:
                kind = "int" if isinstance(dist, IntDistribution) else "float"
                specs[name] = ParamSpec(name, kind, dist.low, dist.high, dist.log)
    return specs


def _parse_entry(name: str, entry) -> ParamSpec | None:
    """One validated entry; anything else (a damaged file) is skipped, the study fills in."""
    if not isinstance(entry, dict) or len(entry) != 1:
        return None
    kind, bounds = next(iter(entry.items()))
    if not isinstance(bounds, (list, tuple)):
        return None
    if kind == "choice":
        return ParamSpec(name, "choice", choices=tuple(bounds))
    if kind not in _NUMERIC_KINDS or len(bounds) != 2:
        return None
    number, log = _NUMERIC_KINDS[kind]
    cast = int if number == "int" else float
    try:
        return ParamSpec(name, number, cast(bounds[0]), cast(bounds[1]), log)
    except (TypeError, ValueError):
        return None


def position_in_range(spec: ParamSpec, value) -> float | None:
    """Where ``value`` sits in the range, 0 = low edge, 1 = high edge (log scale when log)."""
    bounds = spec.numeric_range
    if bounds is None or not isinstance(value, (int, float)) or bounds[0] == bounds[1]:
        return None
    low, high = bounds
    if spec.log and low > 0 and value > 0:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low)
