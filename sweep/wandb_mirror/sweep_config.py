"""The experiment's search space, metric and ASHA settings as a W&B sweep config.

W&B does not choose the trials (Ray Tune + Optuna do); the config tells W&B's sweep views what
was searched, so parallel coordinates and parameter importance read the right ranges.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from training.settings import ConfigError

# Search-space kinds (Ray Tune's names) -> W&B distributions.
CONTINUOUS = {"uniform": "uniform", "loguniform": "log_uniform_values"}
QUANTIZED = {"quniform": "q_uniform", "qloguniform": "q_log_uniform_values"}
INTEGER = {"randint": "int_uniform", "int": "int_uniform", "lograndint": "q_log_uniform_values"}
CATEGORICAL = ("choice", "categorical", "values")


# Optuna's sampler -> W&B's method: W&B has no TPE, GP or NSGA-II of its own; `bayes` (chosen
# from earlier results) is the closest.
WANDB_METHOD = {"random": "random", "tpe": "bayes", "gp": "bayes", "bohb": "bayes",
                "nsga2": "bayes"}
SAMPLER_NAME = {"random": "RandomSampler", "tpe": "TPE", "gp": "GPSampler",
                "bohb": "TPE fitted on ASHA's rungs", "nsga2": "NSGAIISampler"}


def build_sweep_config(name: str, search_space: dict, metric: str, mode: str,
                       scheduler: dict | None = None, trials: int | None = None,
                       constants: dict | None = None, sampler: str = "tpe",
                       objectives: list[tuple[str, str]] | None = None) -> dict:
    """A W&B sweep config for a sweep whose trials Optuna's ``sampler`` chose. ``objectives``:
    a multi-objective sweep's [(metric, mode), ...]; W&B's sweep takes one metric, the primary
    (``metric``, the first), and the description names them all."""
    parameters = {key: wandb_parameter(key, spec) for key, spec in search_space.items()}
    for key, value in (constants or {}).items():
        parameters.setdefault(key, {"value": value})
    config = {
        "name": name,
        "description": describe(sampler, objectives),
        "method": WANDB_METHOD[sampler],
        "metric": {"name": metric, "goal": "maximize" if mode == "max" else "minimize"},
        "parameters": parameters,
    }
    if trials:
        config["run_cap"] = int(trials)
    if scheduler:
        config["early_terminate"] = hyperband(scheduler)
    return config


def describe(sampler: str, objectives: list[tuple[str, str]] | None) -> str:
    if not objectives:
        return (f"Mirrored from Ray Tune: Optuna ({SAMPLER_NAME[sampler]}) chose the trials, "
                "ASHA stopped the weak ones; each run is one trial.")
    said = ", ".join(f"{metric} ({mode})" for metric, mode in objectives)
    return (f"Mirrored from Ray Tune: Optuna ({SAMPLER_NAME[sampler]}) chose the trials on "
            f"{len(objectives)} objectives, {said}, MO-ASHA stopped the weak ones; each run is "
            f"one trial. W&B's metric is the primary one, {objectives[0][0]}; the Pareto front "
            "is the summary run's pareto_front table.")


def wandb_parameter(key: str, spec) -> dict:
    """One search-space entry as a W&B parameter. Entries are ``{kind: [low, high]}``,
    ``{kind: [low, high, step]}``, ``{"type": kind, "low": .., "high": .., "values": ..}``,
    a list (a choice) or a plain value (a constant)."""
    if isinstance(spec, list):
        return {"values": spec}
    if not isinstance(spec, dict):
        return {"value": spec}
    kind, args = spec_kind(key, spec)
    if kind in CATEGORICAL:
        return {"values": list(args)}
    low, high, *step = args
    if kind in CONTINUOUS:
        return {"distribution": CONTINUOUS[kind], "min": float(low), "max": float(high)}
    if kind in QUANTIZED:
        return {"distribution": QUANTIZED[kind], "min": float(low), "max": float(high),
                "q": float(step[0]) if step else 1.0}
    if kind in INTEGER:
        # Ray's randint excludes its upper bound; W&B's int_uniform includes it.
        upper = int(high) - 1 if kind == "randint" else int(high)
        out = {"distribution": INTEGER[kind], "min": int(low), "max": upper}
        return out if kind != "lograndint" else {**out, "q": 1}
    raise ConfigError(f"search space: {key} has kind {kind!r}, which the W&B mirror cannot "
                      f"translate (known: {', '.join(known_kinds())})")


def spec_kind(key: str, spec: dict) -> tuple[str, list]:
    if "type" in spec:
        kind = spec["type"]
        if kind in CATEGORICAL:
            return kind, list(spec.get("values", spec.get("categories", [])))
        args = [spec["low"], spec["high"]] + ([spec["step"]] if spec.get("step") else [])
        return kind, args
    if len(spec) != 1:
        raise ConfigError(f"search space: {key} = {spec!r} should have one kind, e.g. "
                          "{loguniform: [0.0001, 0.01]}")
    ((kind, args),) = spec.items()
    return kind, list(args) if isinstance(args, (list, tuple)) else [args]


def known_kinds() -> list[str]:
    return sorted([*CONTINUOUS, *QUANTIZED, *INTEGER, *CATEGORICAL])


def hyperband(scheduler: dict) -> dict:
    """ASHA's grace period and reduction factor as W&B's hyperband early termination."""
    # W&B's brackets then fall on ASHA's rungs: grace_period * reduction_factor ** k epochs.
    # W&B's eta is an integer >= 2 while ASHA accepts any factor > 1 (1.5 is valid there), so
    # the factor is rounded to the nearest such integer: the brackets are then approximate.
    eta = max(2, round(float(scheduler.get("reduction_factor", 2))))
    return {"type": "hyperband", "min_iter": int(scheduler.get("grace_period", 1)), "eta": eta}


def write_sweep_yaml(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path

