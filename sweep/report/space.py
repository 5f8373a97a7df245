"""The searched parameters and their ranges, read from experiment.yaml or, failing that, from the
Optuna study's distributions. The report needs them for edge warnings and log axes."""
from __future__ import annotations

import math
from dataclasses import dataclass

# Settings that change speed, never results (the loader is num_workers-invariant by design).
SPEED_ONLY = ("num_workers", "pin_memory", "threads")
# Settings whose effect is noise, not quality: grouped away in the seed-aware ranking.
NOISE = ("seed",)

_FLOAT_KINDS = {"uniform": False, "loguniform": True, "quniform": False, "qloguniform": True,
                "float": False}
_INT_KINDS = {"int": False, "randint": False, "lograndint": True, "qrandint": False,
              "integer": False}
_CHOICE_KINDS = ("choice", "categorical", "grid", "grid_search")
_SPACE_KEYS = ("search_space", "space", "param_space", "parameters", "params")


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
    """Parse the search space of an experiment, whatever of the usual spellings it uses."""
    table = _find_space_table(experiment)
    specs = {}
    for name, entry in (table or {}).items():
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


def _find_space_table(experiment: dict) -> dict | None:
    for holder in (experiment, experiment.get("search") or {}):
        if not isinstance(holder, dict):
            continue
        for key in _SPACE_KEYS:
            if isinstance(holder.get(key), dict):
                return holder[key]
    return None


def _parse_entry(name: str, entry) -> ParamSpec | None:
    if isinstance(entry, list):
        return ParamSpec(name, "choice", choices=tuple(entry))
    if not isinstance(entry, dict):
        return None  # a fixed value: not searched
    kind = entry.get("type") or entry.get("kind") or entry.get("distribution")
    if kind is None and len(entry) == 1:  # short form {loguniform: [1e-4, 1e-1]}
        kind, bounds = next(iter(entry.items()))
        entry = {"values": bounds} if kind in _CHOICE_KINDS else _bounds_dict(bounds)
    kind = str(kind).lower()
    if kind in _CHOICE_KINDS:
        values = entry.get("values", entry.get("choices", entry.get("categories", [])))
        return ParamSpec(name, "choice", choices=tuple(values))
    low = _first(entry, "low", "min", "lower")
    high = _first(entry, "high", "max", "upper")
    if low is None or high is None:
        return None
    log = bool(entry.get("log", False))
    if kind in _FLOAT_KINDS:
        return ParamSpec(name, "float", float(low), float(high), log or _FLOAT_KINDS[kind])
    if kind in _INT_KINDS:
        return ParamSpec(name, "int", int(low), int(high), log or _INT_KINDS[kind])
    return None


def _bounds_dict(bounds) -> dict:
    if isinstance(bounds, (list, tuple)) and len(bounds) >= 2:
        return {"low": bounds[0], "high": bounds[1]}
    return dict(bounds) if isinstance(bounds, dict) else {}


def _first(entry: dict, *keys):
    for key in keys:
        if entry.get(key) is not None:
            return entry[key]
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
