"""An experiment: fixed training settings, a search space, and how to search it.

``experiments/NAME.yaml`` -> ``Experiment`` (validated in full before Ray starts: a typo, a wrong
type, an empty range or an unknown model is one ConfigError naming key, value and file).
The search space is a mapping of TrainConfig fields to one distribution each::

    space:
      lr: {loguniform: [1.0e-4, 1.0e-2]}
      batch_size: {choice: [2, 4, 8]}
      seed: {int: [0, 10000]}          # bounds included
      grad_clip: {uniform: [0.5, 2.0]}
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from sweep.wandb_mirror.settings import WandbSettings
from training.config import TrainConfig
from training.settings import (
    ConfigError,
    build,
    coerce,
    load_yaml,
    merge,
    parse_overrides,
    require,
    setting,
)

SPACE_KINDS = ("loguniform", "uniform", "int", "choice")
# The sweep sets these for every trial; an experiment may neither fix nor search them.
SWEEP_OWNED = {"epochs": "set scheduler.max_epochs instead (every trial's epoch budget)",
               "out_dir": "each trial writes under the run directory",
               "load": "trials resume from Ray's checkpoints"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SearchSettings:
    trials: int = setting(12, "Trials in the sweep")
    concurrency: int = setting(2, "Trials at once (also capped by the CPUs and GPUs Ray has)")
    seed: int = setting(0, "Seed of Optuna's TPE sampler: same seed, same suggestions")
    startup_trials: int = setting(10, "Random trials before TPE starts modelling the space")
    time_budget_s: float = setting(0.0, "Wall-clock limit of the sweep, in seconds; running "
                                        "trials are stopped at it; 0 = none")
    max_failures: int = setting(2, "Retries of a crashed trial, each from its last checkpoint")


@dataclass
class SchedulerSettings:  # ASHA
    max_epochs: int = setting(5, "Epochs of a trial that is never stopped early (every trial's "
                                 "budget)")
    grace_period: int = setting(1, "Epochs every trial gets before ASHA may stop it")
    reduction_factor: float = setting(2.0, "ASHA keeps 1 in this many trials at each rung")


@dataclass
class ResourceSettings:
    cpus: float = setting(1.0, "CPUs per trial, plus one per data-loading worker (the trial's "
                               "num_workers); also its torch threads")
    gpus: float = setting(0.0, "GPUs per trial; a fraction lets trials share a GPU")


@dataclass
class ConfirmSettings:
    top_k: int = setting(3, "Best configurations that `confirm` reruns")
    seeds: int = setting(3, "New seeds per configuration")


@dataclass
class Experiment:
    name: str = setting("", "Name of the run folder (runs/<name>/); default: the file's name")
    description: str = setting("", "Free text, for people")
    storage: str = setting("", "Where Ray writes trial results and checkpoints (tune/, "
                               "confirm/): empty = the run directory; a path on storage every "
                               "node shares (NFS); or a URI such as s3://bucket/prefix or "
                               "gs://bucket/prefix (credentials and endpoint from the usual "
                               "environment variables, e.g. AWS_ACCESS_KEY_ID, "
                               "AWS_ENDPOINT_URL). Trials land in <storage>/<name>/")
    train: TrainConfig = setting(help="Fixed training settings of every trial (any TrainConfig "
                                      "field but epochs, out_dir and load)", factory=TrainConfig)
    space: dict = setting({}, "Searched settings: a TrainConfig field -> {loguniform|uniform: "
                              "[lo, hi]}, {int: [lo, hi]} or {choice: [...]}")
    search: SearchSettings = setting(help="How many trials, how many at once, TPE",
                                     factory=SearchSettings)
    scheduler: SchedulerSettings = setting(help="ASHA early stopping",
                                           factory=SchedulerSettings)
    resources: ResourceSettings = setting(help="Resources per trial", factory=ResourceSettings)
    confirm: ConfirmSettings = setting(help="Reruns of the top configurations with new seeds",
                                       factory=ConfirmSettings)
    # The mirror checks its own section (sweep/wandb_mirror/settings.py).
    wandb: dict = setting({}, "The W&B mirror's settings (WandbSettings)")

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
        # Credentials belong in the environment: a URI carrying them would be saved in
        # experiment.yaml (query options such as endpoint_override=host:port are fine).
        require(not re.search(r"(secret|access_key|session_token|://[^/]*@)", self.storage,
                              re.IGNORECASE), source, "storage", "<hidden>",
                "a URI without credentials (set them in the environment instead)")
        try:
            self.train.validate(source)
        except ConfigError as error:  # name the key as the file spells it: train.model
            raise ConfigError(str(error).replace(f"{source}: ", f"{source}: train.", 1)) from None
        search, scheduler, resources = self.search, self.scheduler, self.resources
        for key in ("trials", "concurrency", "startup_trials"):
            require(getattr(search, key) >= 1, source, f"search.{key}", getattr(search, key),
                    "at least 1")
        require(search.time_budget_s >= 0, source, "search.time_budget_s", search.time_budget_s,
                "0 (no limit) or more")
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
        require(bool(self.space), source, "space", self.space, "at least one searched setting")
        WandbSettings.from_dict(self.wandb, source)  # the mirror's section, checked as strictly
        for key, spec in self.space.items():
            check_space_entry(self.train, key, spec, source)

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
