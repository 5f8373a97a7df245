"""Searches replayed against the learning-curve table (bench/lc_table.py), through the product's
own searcher and scheduler: ``sweep.search.make_searcher`` (SweepSearch = OptunaSearch with the
sampler an experiment names, behind a ConcurrencyLimiter) and ``make_scheduler`` (ASHA), built
from an ``Experiment`` exactly as `sweep run` builds them.

Two drivers move those objects:
- ``simulate``: a discrete-event loop in this process that calls them in the order Ray Tune's
  TuneController does (suggest; per result: scheduler.on_trial_result, then on CONTINUE
  searcher.on_trial_result, on STOP scheduler.on_trial_complete and searcher.on_trial_complete),
  on a simulated clock made of the table's epoch times. Hundreds of searches a minute: the bulk.
- ``ray_replay``: a real ``tune.Tuner`` (``sweep.search.tune_config``) around ``replay_trial``, a
  trainable that reads the table instead of training. Seconds of Ray overhead per search: the
  check that the simulation is what Tune does (at concurrency 1 both give the same trials).

A suggestion is looked up in the table by snapping each searched setting to the grid (lr and
weight_decay to the nearest grid point on a log scale). The seed is never searched: as a sweep
with ``search.seeds`` = the table's repeats does, a trial trains every seed of its configuration
in lockstep and reports their mean each epoch (its epoch costs the seeds' summed seconds).
"""
from __future__ import annotations

import heapq
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.lc_table import SEEN_SEEDS

LOG_SCALED = ("lr", "weight_decay")


class Table:
    """The learning-curve table: curves by configuration, the space a search sees, the best."""

    def __init__(self, data: dict):
        self.data = data
        self.settings = data["settings"]
        self.grid = self.settings["grid"]
        self.max_epochs = self.settings["max_epochs"]
        self.configs = {key_of(c["params"]): c for c in data["configs"]}
        # A search sees SEEN_SEEDS of a problem's table (all seeds of the first table); the
        # others score the configuration it returns (issue 21).
        seeds = self.settings["seeds"]
        self.seen_seeds = list(SEEN_SEEDS) if "problem" in self.settings else list(seeds)
        self.heldout_seeds = [s for s in seeds if s not in self.seen_seeds]
        scores = {k: config_score(self.seen_runs(c)) for k, c in self.configs.items()}
        self.scores = scores
        self.best_key = max(scores, key=scores.get)
        self.best = scores[self.best_key]
        # Held-out score: the best epoch of the held-out seeds' mean (none in an older table).
        self.heldout = {k: config_score([r for r in c["runs"]
                                         if r["seed"] in self.heldout_seeds])
                        for k, c in self.configs.items()} if self.heldout_seeds else {}

    def seen_runs(self, config: dict) -> list[dict]:
        return [r for r in config["runs"] if r["seed"] in self.seen_seeds]

    def snap(self, params: dict) -> dict:
        """The grid point a suggestion falls on."""
        snapped = {}
        for key, values in self.grid.items():
            given = params.get(key, values[0])
            if key in LOG_SCALED:
                snapped[key] = min(values, key=lambda v: abs(math.log(v) - math.log(given)))
            else:
                snapped[key] = given
        return snapped

    def run(self, params: dict) -> dict:
        """What a trial of this suggestion reports: its grid point's seeds, averaged."""
        config = self.configs.get(key_of(self.snap(params)))
        if config is None:
            raise KeyError(f"the table holds no run of {self.snap(params)} (an incomplete table?)")
        return mean_run(self.seen_runs(config))

    @property
    def seeds(self) -> int:
        """Seen repeats per configuration: the sweep's search.seeds in the replay."""
        return min(len(self.seen_runs(c)) for c in self.configs.values())

    def space(self) -> dict:
        return grid_space(self.grid)

    def fixed_train(self) -> dict:
        return grid_fixed(self.grid)


def grid_space(grid: dict) -> dict:
    """The search space of a grid as an experiment writes it: log-uniform lr (and weight decay)
    over the grid's range, a choice of the rest (never the seed)."""
    space = {}
    for key, values in grid.items():
        if len(values) < 2:
            continue
        if key in LOG_SCALED:
            space[key] = {"loguniform": [min(values), max(values)]}
        else:
            space[key] = {"choice": list(values)}
    return space


def grid_fixed(grid: dict) -> dict:
    """The grid's single-valued settings, fixed in ``train:``."""
    return {k: v[0] for k, v in grid.items() if len(v) == 1}


def key_of(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def mean_run(runs: list[dict]) -> dict:
    """Several seeds as one trial (training/replicates.py): per epoch the mean val_dice and
    val_loss, and the seeds' summed seconds (they train one after the other)."""
    def mean(key: str) -> list[float]:
        return [sum(values) / len(values) for values in zip(*(r[key] for r in runs))]

    return {"val_dice": mean("val_dice"), "val_loss": mean("val_loss"),
            "epoch_s": [sum(values) for values in zip(*(r["epoch_s"] for r in runs))]}


def config_score(runs: list[dict]) -> float:
    """A configuration's quality as a sweep scores its trial: the best epoch of the mean over
    these runs (its seeds)."""
    return max(mean_run(runs)["val_dice"])


def epoch_result(run: dict, epoch: int) -> dict:
    """What the trainable reports after ``epoch`` (1-based), as the training loop names it."""
    i = epoch - 1
    return {"epoch": epoch, "val_dice": run["val_dice"][i], "val_loss": run["val_loss"][i],
            "epoch_seconds": run["epoch_s"][i]}


# ---- the simulated Tune loop ----------------------------------------------------------------
@dataclass
class Event:
    """One reported epoch: how many trial-epochs the search had spent, when (simulated
    seconds since the search began), and the val_dice."""
    spent: int
    time_s: float
    trial: int
    epoch: int
    val_dice: float


@dataclass
class Trace:
    events: list[Event] = field(default_factory=list)
    trials: list[dict] = field(default_factory=list)  # params and epochs reached, in start order

    def best_curve(self) -> list[tuple[int, float, float]]:
        """(trial-epochs spent, simulated seconds, best val_dice so far) after each event."""
        best, curve = 0.0, []
        for e in self.events:
            best = max(best, e.val_dice)
            curve.append((e.spent, e.time_s, best))
        return curve


class SimTrial:
    """What the schedulers and the searcher read of a Tune trial: its id, the tag Tune's
    SearchGenerator gives it ("<counter>_...": sweep/trials.py numbers trials by it), its
    status and last result."""

    def __init__(self, number: int):
        self.trial_id = trial_id(number)
        self.experiment_tag = f"{number + 1}_replay"
        self.status = "PENDING"
        self.has_reported_at_least_once = False
        self.last_result: dict = {}
        self.path = None
        self.epoch = 0  # epochs trained (a paused trial resumes after it)


class SimController:
    """The part of Tune's TuneController a scheduler calls back (OrderedASHA stops a paused
    trial through it), doing what Tune does (tune_controller.stop_trial)."""

    def __init__(self, searcher, scheduler, trials: list[SimTrial]):
        self.searcher, self.scheduler, self.trials = searcher, scheduler, trials

    def get_trials(self) -> list[SimTrial]:  # FIFOScheduler.choose_trial_to_run reads these
        return self.trials

    def stop_trial(self, trial: SimTrial) -> None:
        if trial.status in ("TERMINATED", "ERROR"):
            return
        if trial.status in ("PENDING", "PAUSED"):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.searcher.on_trial_complete(trial.trial_id, result=trial.last_result)
        trial.status = "TERMINATED"


def simulate(experiment, table: Table, *, epoch_budget: int | None = None,
             max_trials: int | None = None, storage=None, time_noise: int | None = None,
             until=None) -> Trace:
    """One search: ``experiment.search.concurrency`` trials at a time, each epoch lasting what
    the table recorded; ends after ``max_trials`` trials (default: search.trials) or once
    ``epoch_budget`` trial-epochs were spent (running trials are cut there). The experiment's
    mode decides the scheduler (reproducible: OrderedASHA, pausing trials at rungs, and the
    searcher's held-back tells; async: Ray's ASHA). ``time_noise`` (a seed): every epoch lasts
    a random 0.2-5x its recorded time, as on a busy machine. ``until(trace)``: end the search
    early once it returns True (checked after each reported epoch)."""
    import optuna

    from sweep.search import make_scheduler, make_searcher

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    max_trials = max_trials or (None if epoch_budget else experiment.search.trials)
    with tempfile.TemporaryDirectory(prefix="replay-") as run_dir:
        searcher = make_searcher(experiment, Path(run_dir),
                                 study_storage=storage or optuna.storages.InMemoryStorage())
        scheduler = make_scheduler(experiment)
        return _drive(searcher, scheduler, table, experiment.search.concurrency, epoch_budget,
                      max_trials, time_noise, until)


def _drive(searcher, scheduler, table: Table, concurrency: int, epoch_budget, max_trials,
           time_noise: int | None = None, until=None):
    """Tune's loop, in the order TuneController calls the searcher and the scheduler: ask for
    trials while the searcher gives them (ConcurrencyLimiter and the held-back tells say when
    not); start what ``choose_trial_to_run`` picks while a slot is free; per result
    ``on_trial_result`` of the scheduler, then on CONTINUE/PAUSE the searcher's; on STOP (or
    the last epoch) both ``on_trial_complete``; PAUSE frees the slot until the scheduler
    resumes the trial."""
    import random

    from ray.tune.schedulers import TrialScheduler

    from sweep.trials import trial_number

    jitter = random.Random(time_noise) if time_noise is not None else None
    trace, clock, spent = Trace(), 0.0, 0
    queue: list[tuple[float, int]] = []  # (epoch ends at, trial number)
    trials: list[SimTrial] = []
    controller = SimController(searcher, scheduler, trials)
    runs: dict[int, dict] = {}
    max_epochs = table.max_epochs

    def within_budget() -> bool:
        return epoch_budget is None or spent < epoch_budget

    def ask() -> None:
        while within_budget() and (max_trials is None or len(trials) < max_trials):
            number = len(trials)
            params = searcher.suggest(trial_id(number))
            if params is None:
                return
            trial = SimTrial(number)
            trials.append(trial)
            scheduler.on_trial_add(controller, trial)
            runs[number] = table.run(params)
            trace.trials.append({"params": params, "epochs": 0})

    def train_epoch(number: int) -> None:
        """The trial's next epoch, ending after its recorded seconds (jittered)."""
        trial = trials[number]
        trial.status = "RUNNING"
        seconds = runs[number]["epoch_s"][trial.epoch]
        if jitter is not None:
            seconds *= math.exp(jitter.uniform(math.log(0.2), math.log(5.0)))
        heapq.heappush(queue, (clock + seconds, number))

    def start() -> None:
        while sum(t.status == "RUNNING" for t in trials) < concurrency:
            trial = scheduler.choose_trial_to_run(controller)
            if trial is None:
                return
            train_epoch(trial_number(trial))

    while True:
        if within_budget():
            ask()
            start()
        if not within_budget():
            return trace
        if not queue:
            waiting = [t.trial_id for t in trials if t.status in ("PAUSED", "PENDING")]
            if waiting:
                raise RuntimeError(f"the replay stalled with {waiting} waiting")
            return trace
        clock, number = heapq.heappop(queue)
        trial = trials[number]
        trial.epoch += 1
        spent += 1
        result = epoch_result(runs[number], trial.epoch)
        trial.last_result, trial.has_reported_at_least_once = result, True
        trace.trials[number]["epochs"] = trial.epoch
        trace.events.append(Event(spent, clock, number, trial.epoch, result["val_dice"]))
        if until is not None and until(trace):
            return trace
        decision = scheduler.on_trial_result(controller, trial, result)
        if decision == TrialScheduler.STOP:
            controller.stop_trial(trial)
            continue
        searcher.on_trial_result(trial.trial_id, result)
        if trial.epoch >= max_epochs:
            controller.stop_trial(trial)  # the trainable returned: Tune completes the trial
        elif decision == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
            scheduler.choose_trial_to_run(controller)  # Tune's next step settles the rungs
        else:
            train_epoch(number)


def trial_id(number: int) -> str:
    return f"replay_{number:05d}"


# ---- the same searches through Ray Tune -------------------------------------------------------
def replay_trial(config: dict, *, table: dict, time_scale: float = 0.0) -> None:
    """A trainable that reads the table instead of training: the run ``config`` falls on,
    reported epoch by epoch (sleeping ``time_scale`` x each epoch's recorded seconds), with a
    checkpoint each epoch, so that OrderedASHA can pause it and Tune resume it."""
    import time

    from ray import tune

    run = Table(table).run(config)
    done = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            done = int((Path(folder) / "epoch").read_text())
    for epoch in range(done + 1, len(run["val_dice"]) + 1):
        if time_scale:
            time.sleep(run["epoch_s"][epoch - 1] * time_scale)
        with tempfile.TemporaryDirectory(prefix="replay-ckpt-") as folder:
            (Path(folder) / "epoch").write_text(str(epoch))
            tune.report(epoch_result(run, epoch),
                        checkpoint=tune.Checkpoint.from_directory(folder))


def ray_replay(experiment, table: Table, run_dir: Path, time_scale: float = 0.0) -> list[dict]:
    """One search through a real ``tune.Tuner`` built by ``sweep.search.tune_config`` (Ray must
    be up). Returns the trials in the order Optuna numbered them: params and epochs reached."""
    import optuna
    from ray import tune

    from sweep.rundir import TUNE_DIR
    from sweep.search import quiet_tune, tune_config

    quiet_tune()
    storage = optuna.storages.InMemoryStorage()  # the driver's searcher writes the study here
    trainable = tune.with_parameters(replay_trial, table=table.data, time_scale=time_scale)
    tune.Tuner(trainable, tune_config=tune_config(experiment, run_dir, study_storage=storage),
               run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(Path(run_dir).resolve()),
                                         verbose=0)).fit()
    study = optuna.load_study(study_name=experiment.name, storage=storage)
    return [study_trial(t) for t in study.get_trials(deepcopy=False)]


def study_trial(trial) -> dict:
    """A study's trial as a trace's: the searched params and the last epoch it reported."""
    return {"params": dict(trial.params), "epochs": max(trial.intermediate_values, default=0)}
