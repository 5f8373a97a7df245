"""An experiment: fixed training settings, a search space, and how to search it.

``experiments/NAME.yaml`` -> ``Experiment`` (validated in full before Ray starts: a typo, a wrong
type, an empty range or an unknown model is one ConfigError naming key, value and file).
The search space is a mapping of TrainConfig fields to one distribution each::

    space:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      batch_size: {choice: [2, 4, 8]}
      grad_clip: {uniform: [0.5, 2.0]}
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from sweep.wandb_mirror.settings import WandbSettings
from training.config import TrainConfig
from training.settings import ConfigError, build, coerce, load_yaml, merge, parse_overrides, require

SPACE_KINDS = ("loguniform", "uniform", "int", "choice")
# reproducible: the same experiment gives the same trials, pruning and winner whatever the
# machine's load (README, "Reproducible sweeps"); async: Ray's ASHA, Optuna told at once.
SEARCH_MODES = ("reproducible", "async")
# The sweep sets these for every trial; an experiment may neither fix nor search them.
SWEEP_OWNED = {"epochs": "set scheduler.max_epochs instead (every trial's epoch budget)",
               "out_dir": "each trial writes under the run directory",
               "load": "trials resume from Ray's checkpoints"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SearchSettings:
    trials: int = 12
    concurrency: int = 2  # trials at once (also capped by the CPUs/GPUs Ray has)
    seed: int = 0  # TPE sampler seed: same seed, same suggestions
    startup_trials: int = 10  # random trials before TPE starts modelling
    time_budget_s: float = 0.0  # 0 = no limit; running trials are stopped at the limit
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    mode: str = "reproducible"  # or "async" (see SEARCH_MODES)
    # Seeds per configuration, trained side by side in each trial (train.seed, train.seed+1,
    # ...): ASHA and TPE see their mean. The seed is never searched: it is noise, not a setting.
    seeds: int = 1


@dataclass
class SchedulerSettings:  # ASHA
    max_epochs: int = 5
    grace_period: int = 1  # epochs every trial gets before it can be stopped
    reduction_factor: float = 2.0


@dataclass
class ResourceSettings:
    cpus: float = 1.0  # per trial, plus one per data-loading worker (the trial's num_workers)
    gpus: float = 0.0  # per trial; a fraction lets trials share a GPU


@dataclass
class ConfirmSettings:
    top_k: int = 3  # configurations to rerun
    seeds: int = 3  # new seeds per configuration


@dataclass
class FaultSettings:
    """Testing hooks, so the failure paths run on CPU too: trials whose config matches every
    item of ``oom_when`` run out of memory at epoch ``oom_epoch``; those matching ``error_when``
    crash at epoch ``error_epoch`` unless resumed from a checkpoint (so a retry gets past it)."""
    oom_when: dict = field(default_factory=dict)
    oom_epoch: int = 1
    error_when: dict = field(default_factory=dict)
    error_epoch: int = 2


@dataclass
class Experiment:
    name: str = ""
    description: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)
    space: dict = field(default_factory=dict)
    search: SearchSettings = field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    confirm: ConfirmSettings = field(default_factory=ConfirmSettings)
    wandb: dict = field(default_factory=dict)  # the W&B mirror's settings (its own schema)
    faults: FaultSettings = field(default_factory=FaultSettings)

    @classmethod
    def from_dict(cls, values: dict, source: str) -> Experiment:
        check_sweep_owned(values, source)
        experiment = build(cls, values, source)
        experiment.validate(source)
        if experiment.train.threads == 0:
            # Pinned threads: the same experiment gives the same numbers on any machine. The
            # count is part of the result (reductions split by thread) and of each trial's
            # recorded config, so changing resources.cpus can change the last bits.
            experiment.train.threads = max(1, int(experiment.resources.cpus))
        return experiment

    def to_dict(self) -> dict:
        """The resolved experiment, as experiment.yaml records it (loads back unchanged)."""
        values = dataclasses.asdict(self)
        for key in SWEEP_OWNED:
            values["train"].pop(key)
        return values

    def validate(self, source: str) -> None:
        require(bool(NAME_PATTERN.match(self.name)), source, "name", self.name,
                "a folder name (letters, digits, '.', '_' or '-')")
        try:
            self.train.validate(source)
        except ConfigError as error:  # name the key as the file spells it: train.model
            raise ConfigError(str(error).replace(f"{source}: ", f"{source}: train.", 1)) from None
        search, scheduler, resources = self.search, self.scheduler, self.resources
        for key in ("trials", "concurrency", "startup_trials", "seeds"):
            require(getattr(search, key) >= 1, source, f"search.{key}", getattr(search, key),
                    "at least 1")
        require(search.time_budget_s >= 0, source, "search.time_budget_s", search.time_budget_s,
                "0 (no limit) or more")
        require(search.mode in SEARCH_MODES, source, "search.mode", search.mode,
                " or ".join(SEARCH_MODES))
        require(search.mode == "async" or not search.time_budget_s, source,
                "search.time_budget_s", search.time_budget_s,
                "0 in reproducible mode (a time budget stops trials by the clock; "
                "use search.mode=async)")
        require(search.max_failures >= 0, source, "search.max_failures", search.max_failures,
                "0 or more")
        require(scheduler.max_epochs >= 1, source, "scheduler.max_epochs", scheduler.max_epochs,
                "at least 1")
        require(1 <= scheduler.grace_period <= scheduler.max_epochs, source,
                "scheduler.grace_period", scheduler.grace_period,
                f"between 1 and scheduler.max_epochs ({scheduler.max_epochs})")
        require(scheduler.reduction_factor > 1, source, "scheduler.reduction_factor",
                scheduler.reduction_factor, "more than 1")
        require(resources.cpus > 0, source, "resources.cpus", resources.cpus, "more than 0")
        require(resources.gpus >= 0, source, "resources.gpus", resources.gpus, "0 or more")
        require(resources.gpus <= 1 or resources.gpus == int(resources.gpus), source,
                "resources.gpus", resources.gpus, "a fraction up to 1, or a whole number")
        require(self.confirm.top_k >= 1, source, "confirm.top_k", self.confirm.top_k, "at least 1")
        require(self.confirm.seeds >= 1, source, "confirm.seeds", self.confirm.seeds, "at least 1")
        require(self.faults.oom_epoch >= 1, source, "faults.oom_epoch", self.faults.oom_epoch,
                "at least 1")
        require(bool(self.space), source, "space", self.space, "at least one searched setting")
        WandbSettings.from_dict(self.wandb, source)  # the mirror's section, checked as strictly
        for key, spec in self.space.items():
            check_space_entry(self.train, key, spec, source)
        require(self.faults.error_epoch >= 2, source, "faults.error_epoch",
                self.faults.error_epoch, "2 or more (a retry resumes after an earlier epoch)")
        for section in ("oom_when", "error_when"):
            for key, value in getattr(self.faults, section).items():
                check_setting(self.train, f"faults.{section}.{key}", key, value, source)

    def seeds(self) -> list[int]:
        """The seeds every configuration trains with (search.seeds of them)."""
        return [self.train.seed + i for i in range(self.search.seeds)]

    def distributions(self) -> dict:
        """The space as Optuna distributions (what OptunaSearch and the study record)."""
        return {key: to_distribution(spec) for key, spec in self.space.items()}

    def trial_config(self, params: dict, **runtime) -> TrainConfig:
        """The full training config of one trial: fixed settings, then its params."""
        return TrainConfig.from_dict(
            {**self.train.to_dict(), **params, "epochs": self.scheduler.max_epochs, **runtime},
            f"trial {params}")


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, merge ``--key=value`` overrides, validate. Errors name the file (and flag)."""
    values = load_yaml(path)
    if not values:
        raise ConfigError(f"{path}: empty experiment file")
    values.setdefault("name", Path(path).stem)
    Experiment.from_dict(values, str(path))  # the file's own mistakes, named as the file's
    if overrides:
        given = parse_overrides(overrides, f"{path} (command line)")
        values = merge(values, given)
        if isinstance(given.get("space"), dict) and isinstance(values.get("space"), dict):
            values["space"].update(given["space"])  # a new distribution replaces, never merges
        return Experiment.from_dict(values, f"{path} with command-line overrides")
    return Experiment.from_dict(values, str(path))


def check_sweep_owned(values: dict, source: str) -> None:
    for section in ("train", "space"):
        given = values.get(section)
        for key in SWEEP_OWNED:
            if isinstance(given, dict) and key in given:
                raise ConfigError(f"{source}: {section}.{key} = {given[key]!r} cannot be set "
                                  f"here: {SWEEP_OWNED[key]}")


def check_space_entry(train: TrainConfig, key: str, spec, source: str) -> None:
    where = f"space.{key}"
    if key == "seed":
        raise ConfigError(f"{source}: {where} = {spec!r}: a seed is noise, not a setting to "
                          "optimise (TPE would fit the noise); set search.seeds=k to train k "
                          "seeds per configuration and rank configurations by their mean")
    hints = typing.get_type_hints(TrainConfig)
    if key not in hints:
        raise ConfigError(f"{source}: {where} is not a training setting "
                          f"(known: {', '.join(sorted(hints))})")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SPACE_KINDS:
        raise ConfigError(f"{source}: {where} = {spec!r} should be one of "
                          + ", ".join(f"{{{kind}: ...}}" for kind in SPACE_KINDS))
    kind, bounds = next(iter(spec.items()))
    where = f"{where}.{kind}"
    if kind == "choice":
        require(isinstance(bounds, list) and len(bounds) >= 1, source, where, bounds,
                "a non-empty list of values")
        for i, value in enumerate(bounds):
            check_setting(train, f"{where}[{i}]", key, value, source)
        return
    require(isinstance(bounds, list) and len(bounds) == 2, source, where, bounds,
            "a [low, high] pair")
    number = hints[key]
    if kind == "int" and number is not int:
        raise ConfigError(f"{source}: {where} = {bounds!r}: {key} is not an integer setting "
                          f"(use {'uniform' if number is float else 'choice'})")
    if kind != "int" and number is not float:
        raise ConfigError(f"{source}: {where} = {bounds!r}: {key} is not a real-number "
                          f"setting (use {'int' if number is int else 'choice'})")
    low, high = (coerce(number, b, source, f"{where}[{i}]") for i, b in enumerate(bounds))
    require(low < high, source, where, bounds, "a non-empty range (low < high)")
    require(kind != "loguniform" or low > 0, source, where, bounds, "positive (log scale)")
    for i, value in enumerate((low, high)):
        check_setting(train, f"{where}[{i}]", key, value, source)


def check_setting(train: TrainConfig, where: str, key: str, value, source: str) -> None:
    """One value of a training setting: right type, and a config that validates with it."""
    hints = typing.get_type_hints(TrainConfig)
    if key not in hints:
        raise ConfigError(f"{source}: {where} names no training setting {key!r}")
    if key in SWEEP_OWNED:
        raise ConfigError(f"{source}: {where} = {value!r}: {key} is {SWEEP_OWNED[key]}")
    value = coerce(hints[key], value, source, where)
    try:
        TrainConfig.from_dict({**train.to_dict(), key: value}, source)
    except ConfigError as error:
        detail = str(error).removeprefix(f"{source}: ")
        raise ConfigError(f"{source}: {where} = {value!r} is not usable ({detail})") from None


def to_distribution(spec: dict):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        return CategoricalDistribution(bounds)
    if kind == "int":
        return IntDistribution(bounds[0], bounds[1])
    return FloatDistribution(float(bounds[0]), float(bounds[1]), log=kind == "loguniform")
