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
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from sweep.distributions import to_distribution
from sweep.wandb_mirror.settings import WandbSettings
from training.config import TrainConfig
from training.cost_keys import LOAD_DEPENDENT, LOAD_INDEPENDENT
from training.settings import (
    ConfigError,
    build,
    coerce,
    load_yaml,
    merge,
    parse_overrides,
    quote,
    quote_key,
    require,
    setting,
)

SPACE_KINDS = ("loguniform", "uniform", "int", "choice")
# reproducible: the same experiment gives the same trials, pruning and winner whatever the
# machine's load (README, "Reproducible sweeps"); async: Ray's ASHA, Optuna told at once.
SEARCH_MODES = ("reproducible", "async")
SPEED_KNOBS = ("num_workers", "pin_memory")  # change speed, never results (sweep/speed.py)
# Optuna's TPESampler, RandomSampler, GPSampler, NSGAIISampler; bohb: sweep/rung_sampler.py (TPE
# on ASHA's rungs)
SAMPLERS = ("tpe", "random", "gp", "bohb", "nsga2")
# The sweep sets these for every trial; an experiment may neither fix nor search them.
SWEEP_OWNED = {"epochs": "set scheduler.max_epochs instead (every trial's epoch budget)",
               "out_dir": "each trial writes under the run directory",
               "load": "trials resume from Ray's checkpoints"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Upper bounds (README "Bad input"): far above real sweeps, low enough that a typo fails here.
SEARCH_BOUNDS = {"trials": 100_000, "concurrency": 1024, "startup_trials": 100_000,
                 "max_failures": 100, "seed": 2**32 - 1, "seeds": 100, "lag": 100_000}
# What ASHA may compare at a rung, and which way is better (the loop reports all three).
RUNG_METRICS = {"val_dice": "max", "val_iou": "max", "val_loss": "min"}
MAX_RUNGS = 100  # ASHA keeps one list per rung: reduction_factor 1.000000001 would make ~1e9
MAX_CHOICES = 1000
# search.objectives (docs/PARETO.md): what a multi-objective sweep may trade. The loop's scores,
# and the costs training/costs.py records every epoch (training/cost_keys.py): params and flops
# are counted, the others measured, so a busy machine changes them (samples_per_s too).
SCORE_OBJECTIVES = ("val_dice", "val_iou", "val_loss")
# Recorded beside the costs, but they describe the measurement, not the model.
NOT_OBJECTIVES = {"cpu_load": "the machine's load while the latency was timed",
                  "latency_ms_spread": "the noise of the latency measurement"}
FIXED_COSTS = LOAD_INDEPENDENT
LOAD_DEPENDENT_COSTS = (*(key for key in LOAD_DEPENDENT if key not in NOT_OBJECTIVES),
                        "samples_per_s")
OBJECTIVE_METRICS = SCORE_OBJECTIVES + FIXED_COSTS + LOAD_DEPENDENT_COSTS
MAX_OBJECTIVES = 4  # the hypervolume is exact by recursion: cheap up to a few objectives
# Optuna samplers that search several objectives (checked in Optuna 5.0: GPSampler's logEHVI);
# bohb fits TPE to one rung metric.
MULTI_OBJECTIVE_SAMPLERS = ("tpe", "nsga2", "random", "gp")


@dataclass
class SearchSettings:
    trials: int = setting(12, "Trials in the sweep")
    concurrency: int = setting(2, "Trials at once (also capped by the CPUs and GPUs Ray has)")
    seed: int = setting(0, "Seed of Optuna's sampler: same seed, same suggestions")
    sampler: str = setting("tpe", "Optuna sampler: tpe, random (no model), gp (Gaussian "
                                  "process; learns from completed trials only), bohb (TPE "
                                  "fitted at the largest ASHA rung with startup_trials "
                                  "finished trials, on the rung metric) or nsga2 (NSGA-II: "
                                  "generations of startup_trials trials, the first random; "
                                  "meant for search.objectives)")
    startup_trials: int = setting(10, "Random trials before TPE (or GP) starts modelling the "
                                      "space")
    # Optuna 5's own defaults, written out so that another Optuna version searches the same way.
    multivariate: bool = setting(True, "TPE models the settings jointly (False: one at a time, "
                                       "Optuna 4's default)")
    constant_liar: bool = setting(True, "TPE treats running trials as bad results, so concurrent "
                                        "trials are not suggested side by side")
    time_budget_s: float = setting(0.0, "Wall-clock limit of the sweep, in seconds; running "
                                        "trials are stopped at it; 0 = none")
    max_failures: int = setting(2, "Retries of a crashed trial, each from its last checkpoint")
    probe_steps: int = setting(40, "Steps per candidate of the speed probe that fixes "
                                   "num_workers/pin_memory for every trial (sweep/speed.py); "
                                   "0 = no probe: the first listed value")
    mode: str = setting("reproducible", "reproducible: the same experiment gives the same "
                                        "trials, pruning and winner whatever the load; async: "
                                        "trials are told and compared as they finish")
    seeds: int = setting(1, "Seeds per configuration, trained side by side in each trial "
                            "(train.seed, train.seed+1, ...); ASHA and TPE see their mean")
    lag: int = setting(0, "Reproducible mode: trial n is suggested once trials 0..n-lag have "
                          "ended (and only those are told), so TPE sees the same trials "
                          "whatever the timing; 0 = twice the concurrency. Larger: a slot "
                          "seldom waits for one long trial, TPE learns a little later. "
                          "Unused with sampler random (nothing to wait for)")
    warm_start: list[str] = setting([], "Run directories of earlier sweeps of the same "
                                        "problem (docs/EXTEND.md) whose finished trials the "
                                        "sampler is told before its first suggestion, without "
                                        "training them again; they count toward no trial total")
    objectives: list = setting([], "Multi-objective sweep: 2 to 4 {metric: max or min}, e.g. "
                                   "[{val_dice: max}, {flops: min}]; metrics: val_dice, "
                                   "val_iou, val_loss, params, flops, and (async mode only) "
                                   "latency_ms, latency_eval_ms, peak_mem_mb, samples_per_s. "
                                   "The first is the primary (W&B's metric, pick's default); "
                                   "the front goes to pareto.csv (docs/PARETO.md). Empty: "
                                   "val_dice alone")

    def objective_list(self) -> list[tuple[str, str]]:
        """[(metric, mode), ...] of a multi-objective sweep, primary first; [] when the sweep
        optimises val_dice alone (no objectives, or just {val_dice: max})."""
        pairs = [next(iter(entry.items())) for entry in self.objectives]
        return pairs if len(pairs) > 1 else []

    def effective_lag(self) -> int:
        """How many trials back a reproducible ask waits for (0 in async mode)."""
        if self.mode != "reproducible" or self.sampler == "random":
            return 0  # random suggestions never depend on results: nothing to wait for
        return self.lag or 2 * self.concurrency


@dataclass
class SchedulerSettings:  # ASHA
    max_epochs: int = setting(5, "Epochs of a trial that is never stopped early (every trial's "
                                 "budget)")
    grace_period: int = setting(1, "Epochs every trial gets before ASHA may stop it")
    reduction_factor: float = setting(2.0, "ASHA keeps 1 in this many trials at each rung")
    metric: str = setting("val_dice", "What ASHA compares at its rungs: val_dice, val_iou "
                                      "(higher is better) or val_loss (lower); TPE, the "
                                      "winner and the report use val_dice (with "
                                      "search.objectives: those, and this replaces a primary "
                                      "val_dice/val_iou/val_loss at the rungs)")
    brackets: int = setting(1, "Hyperband brackets: bracket b's first rung is at "
                               "grace_period * reduction_factor**b (reproducible mode: trial "
                               "n is in bracket n % brackets; async: Ray's ASHA draws it)")


@dataclass
class ResourceSettings:
    cpus: float = setting(1.0, "CPUs per trial (also its torch threads), plus worker_cpus per "
                               "data-loading worker")
    worker_cpus: float = setting(1.0, "CPUs one data-loading worker reserves; the speed probe "
                                      "replaces it with what a worker was measured to use")
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
        require(isinstance(self.name, str) and bool(NAME_PATTERN.match(self.name)), source,
                "name", self.name, "a folder name (letters, digits, '.', '_' or '-'; at most "
                "100)")
        require(isinstance(self.storage, str), source, "storage", self.storage,
                "a path or a URI (text)")
        # Credentials belong in the environment: a URI carrying them would be saved in
        # experiment.yaml (query options such as endpoint_override=host:port are fine).
        require(not re.search(r"(secret|access_key|session_token|://[^/]*@)", self.storage,
                              re.IGNORECASE), source, "storage", "<hidden>",
                "a URI without credentials (set them in the environment instead)")
        try:
            self.train.validate(source)
        except ConfigError as error:  # name the key as the file spells it: train.model
            raise ConfigError(str(error).replace(f"{source}: ", f"{source}: train.", 1)) from None
        search, resources = self.search, self.resources
        for key in ("trials", "concurrency", "startup_trials", "seeds"):
            require(getattr(search, key) >= 1, source, f"search.{key}", getattr(search, key),
                    "at least 1")
        for key in ("max_failures", "seed"):
            require(getattr(search, key) >= 0, source, f"search.{key}", getattr(search, key),
                    "0 or more")
        for key, high in SEARCH_BOUNDS.items():
            require(getattr(search, key) <= high, source, f"search.{key}", getattr(search, key),
                    f"at most {high}")
        # A lag below the concurrency would leave slots empty by construction.
        require(search.lag == 0 or search.lag >= search.concurrency, source, "search.lag",
                search.lag, f"0 (twice the concurrency) or at least search.concurrency "
                f"({search.concurrency})")
        require(0 <= search.time_budget_s <= 1e9, source, "search.time_budget_s",
                search.time_budget_s, "0 (no limit) or more, up to 1e9")
        self.validate_scheduler(source)
        # Ray counts resources in steps of 1e-4; below 0.01 a trial reserves (next to) nothing.
        require(0.01 <= resources.cpus <= 1024, source, "resources.cpus", resources.cpus,
                "between 0.01 and 1024")
        require(resources.gpus == 0 or 0.01 <= resources.gpus <= 64, source, "resources.gpus",
                resources.gpus, "0, or between 0.01 and 64")
        require(search.sampler in SAMPLERS, source, "search.sampler", search.sampler,
                " or ".join(SAMPLERS))
        require(0 <= resources.worker_cpus <= 64, source, "resources.worker_cpus",
                resources.worker_cpus, "between 0 and 64")
        require(0 <= search.probe_steps <= 10_000, source, "search.probe_steps",
                search.probe_steps, "0 (no probe) up to 10000")
        require(search.mode in SEARCH_MODES, source, "search.mode", search.mode,
                " or ".join(SEARCH_MODES))
        check_objectives(search, source)
        for i, path in enumerate(search.warm_start):
            require(isinstance(path, str) and path.strip() != "", source,
                    f"search.warm_start[{i}]", path, "a run directory (text)")
        require(search.mode == "async" or not search.time_budget_s, source,
                "search.time_budget_s", search.time_budget_s,
                "0 in reproducible mode (a time budget stops trials by the clock; "
                "use search.mode=async)")
        require(resources.gpus <= 1 or resources.gpus == int(resources.gpus), source,
                "resources.gpus", resources.gpus, "a fraction up to 1, or a whole number")
        for key in ("top_k", "seeds"):
            value = getattr(self.confirm, key)
            require(1 <= value <= 1000, source, f"confirm.{key}", value, "between 1 and 1000")
        check_device(self.train.device, resources.gpus, "train.device", source)
        require(bool(self.space), source, "space", self.space, "at least one searched setting")
        # The speed probe fixes these for every trial and takes them out of the space: TPE
        # would be left with nothing to search.
        require(bool(set(self.space) - set(SPEED_KNOBS)), source, "space", list(self.space),
                "at least one searched setting besides num_workers and pin_memory (they change "
                "speed only: the speed probe fixes them)")
        WandbSettings.from_dict(self.wandb, source)  # the mirror's section, checked as strictly
        for key, spec in self.space.items():
            check_space_entry(self.train, key, spec, source, gpus=resources.gpus)

    def validate_scheduler(self, source: str) -> None:
        scheduler = self.scheduler
        require(1 <= scheduler.max_epochs <= 100_000, source, "scheduler.max_epochs",
                scheduler.max_epochs, "between 1 and 100000")
        require(1 <= scheduler.grace_period <= scheduler.max_epochs, source,
                "scheduler.grace_period", scheduler.grace_period,
                f"between 1 and scheduler.max_epochs ({scheduler.max_epochs})")
        require(scheduler.metric in RUNG_METRICS, source, "scheduler.metric", scheduler.metric,
                " or ".join(RUNG_METRICS))
        require(1 <= scheduler.brackets <= 10, source, "scheduler.brackets", scheduler.brackets,
                "between 1 and 10")
        factor = scheduler.reduction_factor
        require(factor > 1, source, "scheduler.reduction_factor", factor, "more than 1")
        # ASHA's own count (ray.tune.schedulers.async_hyperband._Bracket).
        rungs = math.log(scheduler.max_epochs / scheduler.grace_period) / math.log(factor) + 1
        require(rungs <= MAX_RUNGS, source, "scheduler.reduction_factor", factor,
                f"large enough for at most {MAX_RUNGS} ASHA rungs between grace_period and "
                f"max_epochs (this one makes {rungs:.3g}; 2 to 4 is usual)")

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


# Keys an earlier version wrote into every run's experiment.yaml and this one no longer has
# (`faults:` became the tests' CRACK_SWEEP_FAULTS): dropped when a saved run is read back, so
# `resume` and `confirm` still work on older runs. An experiment a user writes may not hold them.
RETIRED_KEYS = ("faults",)


def load_saved_experiment(path: str | Path) -> Experiment:
    """A run directory's own experiment.yaml (written by `run`), older versions' included."""
    values = load_yaml(path)
    for key in RETIRED_KEYS:
        values.pop(key, None)
    if not values:
        raise ConfigError(f"{path}: empty experiment file")
    search = values.get("search")
    if isinstance(search, dict) and "lag" not in search:
        # Written before search.lag existed: those runs waited for trial n-concurrency. A
        # resume must ask the same way, or its trials would differ from an unbroken run's.
        search["lag"] = search.get("concurrency", SearchSettings.concurrency)
    return Experiment.from_dict(values, str(path))


def check_sweep_owned(values: dict, source: str) -> None:
    for section in ("train", "space"):
        given = values.get(section)
        for key in SWEEP_OWNED:
            if isinstance(given, dict) and key in given:
                raise ConfigError(f"{source}: {section}.{key} = {quote(given[key])} cannot be set "
                                  f"here: {SWEEP_OWNED[key]}")


def check_objectives(search: SearchSettings, source: str) -> None:
    """search.objectives: one line naming the entry that is wrong, and why."""
    objectives = search.objectives
    require(isinstance(objectives, list), source, "search.objectives", objectives,
            "a list of {metric: max or min}, e.g. [{val_dice: max}, {flops: min}]")
    seen = set()
    for i, entry in enumerate(objectives):
        where = f"search.objectives[{i}]"
        require(isinstance(entry, dict) and len(entry) == 1, source, where, entry,
                "one {metric: max or min}, e.g. {flops: min}")
        metric, mode = next(iter(entry.items()))
        if metric in NOT_OBJECTIVES:
            raise ConfigError(f"{source}: {where} = {quote(entry)}: {metric} is "
                              f"{NOT_OBJECTIVES[metric]}, not a cost of the model")
        require(metric in OBJECTIVE_METRICS, source, where, entry,
                "a metric among " + ", ".join(OBJECTIVE_METRICS))
        require(mode in ("max", "min"), source, where, entry, f"{{{metric}: max}} or "
                f"{{{metric}: min}}")
        require(metric not in seen, source, where, entry, f"a metric not listed before "
                f"({metric} is)")
        seen.add(metric)
        if metric in LOAD_DEPENDENT_COSTS and search.mode == "reproducible":
            raise ConfigError(
                f"{source}: {where} = {quote(entry)}: {metric} depends on the machine's load, so "
                f"in reproducible mode it would make the trials depend on the load; use "
                f"search.mode=async, or a cost that does not ({', '.join(FIXED_COSTS)})")
    if len(objectives) == 1:  # the default, said out loud, is fine; anything else is a slip
        require(objectives[0] == {"val_dice": "max"}, source, "search.objectives", objectives,
                "2 or more objectives (a sweep of one objective optimises val_dice: leave "
                "search.objectives empty)")
    require(len(objectives) <= MAX_OBJECTIVES, source, "search.objectives", objectives,
            f"at most {MAX_OBJECTIVES} objectives")
    if len(objectives) > 1:
        require(search.sampler in MULTI_OBJECTIVE_SAMPLERS, source, "search.sampler",
                search.sampler, ", ".join(MULTI_OBJECTIVE_SAMPLERS) + f" with "
                f"{len(objectives)} search.objectives (bohb fits its model to one metric)")


def check_space_entry(train: TrainConfig, key: str, spec, source: str,
                      gpus: float | None = None) -> None:
    where = f"space.{quote_key(str(key))}"
    if key == "seed":
        raise ConfigError(f"{source}: {where} = {quote(spec)}: a seed is noise, not a setting to "
                          "optimise (TPE would fit the noise); set search.seeds=k to train k "
                          "seeds per configuration and rank configurations by their mean")
    hints = typing.get_type_hints(TrainConfig)
    if key not in hints:
        raise ConfigError(f"{source}: {where} is not a training setting "
                          f"(known: {', '.join(sorted(hints))})")
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SPACE_KINDS:
        raise ConfigError(f"{source}: {where} = {quote(spec)} should be one of "
                          + ", ".join(f"{{{kind}: ...}}" for kind in SPACE_KINDS))
    kind, bounds = next(iter(spec.items()))
    where = f"{where}.{kind}"
    if kind == "choice":
        require(isinstance(bounds, list) and 1 <= len(bounds) <= MAX_CHOICES, source, where,
                bounds, f"a non-empty list of at most {MAX_CHOICES} values")
        for i, value in enumerate(bounds):
            check_setting(train, f"{where}[{i}]", key, value, source)
            if key == "device" and gpus is not None:
                check_device(value, gpus, f"{where}[{i}]", source)
        return
    require(isinstance(bounds, list) and len(bounds) == 2, source, where, bounds,
            "a [low, high] pair")
    number = hints[key]
    if kind == "int" and number is not int:
        raise ConfigError(f"{source}: {where} = {quote(bounds)}: {key} is not an integer setting "
                          f"(use {'uniform' if number is float else 'choice'})")
    if kind != "int" and number is not float:
        raise ConfigError(f"{source}: {where} = {quote(bounds)}: {key} is not a real-number "
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
        raise ConfigError(f"{source}: {where} = {quote(value)}: {key} is {SWEEP_OWNED[key]}")
    value = coerce(hints[key], value, source, where)
    try:
        TrainConfig.from_dict({**train.to_dict(), key: value}, source)
    except ConfigError as error:
        detail = str(error).removeprefix(f"{source}: ")
        raise ConfigError(f"{source}: {where} = {quote(value)} is not usable ({detail})") \
            from None


def check_device(device: str, gpus: float, where: str, source: str) -> None:
    """A trial sees only the GPUs Ray reserved for it (none when resources.gpus is 0), and sees
    them numbered from 0: a device that names others fails in every trial."""
    if not device.startswith("cuda"):
        return
    if gpus == 0:
        raise ConfigError(f"{source}: {where} = {quote(device)} but resources.gpus = 0: a trial "
                          "reserves no GPU and Ray hides them all (set resources.gpus, or "
                          "device auto or cpu)")
    index = int(device.partition(":")[2] or 0)
    visible = max(1, math.ceil(gpus))
    if index >= visible:
        raise ConfigError(f"{source}: {where} = {quote(device)} but each trial sees {visible} "
                          f"GPU(s), numbered from 0 (resources.gpus = {gpus:g}): use cuda or "
                          f"cuda:0")
