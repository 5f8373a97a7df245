"""Build the Ray Tune sweep of an experiment: OptunaSearch (the sampler search.sampler names,
seeded, its study in a journal file under the run directory), ASHA, resources per trial and the
RunConfig.

What Tune sees reaches Optuna as Optuna means it: a trial ASHA stopped is PRUNED (with its
intermediate values, so TPE still learns from it), one that ran out of memory is FAIL, and a
finished one is COMPLETE with the best val_dice it reached (the epoch whose checkpoint is kept).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from data_pipeline import SegmentationData
from sweep.experiment import Experiment, SearchSettings
from sweep.faults import faults_from_env
from sweep.rundir import (
    COMPLETE,
    METRIC,
    MODE,
    PRUNED,
    STUDY_FILE,
    TUNE_DIR,
    infeasible_reason,
    verdict,
)
from sweep.trainable import train_trial

log = logging.getLogger(__name__)


def journal_storage(run_dir: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(run_dir).resolve() / STUDY_FILE)))


class SweepSearch(OptunaSearch):
    """OptunaSearch whose tells say what happened to the trial (see the module docstring)."""

    def __init__(self, *, max_epochs: int, run_dir: str, budget: bool, **kwargs):
        self._max_epochs, self._run_dir, self._budget = max_epochs, run_dir, budget
        super().__init__(**kwargs)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._ot_trials or trial_id in self._completed_trials:
            return
        self._completed_trials.add(trial_id)
        status, reason = verdict(result, errored=error, max_epochs=self._max_epochs,
                                 infeasible=infeasible_reason(self._run_dir, trial_id),
                                 budget=self._budget)
        trial = self._ot_trials[trial_id]
        try:
            if result:
                self._report(trial_id, result)  # a STOP result never reached on_trial_result
            trial.set_user_attr("ray_trial_id", trial_id)
            trial.set_user_attr("status", status)
            trial.set_user_attr("reason", reason)
            self._tell(trial, status)
        except Exception as error:  # noqa: BLE001 - e.g. told already, before a driver restart
            log.debug("optuna: cannot tell trial %s (%s): %s", trial_id, status, error)

    def _tell(self, trial, status: str) -> None:
        from optuna.trial import TrialState

        values = self._frozen(trial).intermediate_values
        if status == COMPLETE and values:
            self._ot_study.tell(trial, max(values.values()))
        elif status in (COMPLETE, PRUNED):
            self._ot_study.tell(trial, state=TrialState.PRUNED)  # last value becomes its value
        else:
            self._ot_study.tell(trial, state=TrialState.FAIL)

    def _report(self, trial_id: str, result: dict) -> None:
        step, value = result.get("epoch"), result.get(self.metric)
        trial = self._ot_trials[trial_id]
        if step is None or value is None or int(step) in self._frozen(trial).intermediate_values:
            return
        trial.report(float(value), int(step))

    def _frozen(self, trial):
        return self._ot_study.get_trials(deepcopy=False)[trial.number]


def make_sampler(search: SearchSettings):
    """The Optuna sampler that ``search`` names, seeded."""
    import optuna

    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=search.seed, n_startup_trials=search.startup_trials)
    return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup_trials,
                                      multivariate=search.multivariate,
                                      constant_liar=search.constant_liar)


def make_searcher(experiment: Experiment, run_dir: Path, storage=None):
    """SweepSearch behind a ConcurrencyLimiter. ``storage``: the study's Optuna storage, by
    default a journal file under the run directory (bench/lc_replay.py passes an in-memory one
    to replay thousands of searches)."""
    search = experiment.search
    searcher = SweepSearch(
        space=experiment.distributions(), metric=METRIC, mode=MODE,
        sampler=make_sampler(search), study_name=experiment.name,
        storage=storage if storage is not None else journal_storage(run_dir),
        max_epochs=experiment.scheduler.max_epochs, run_dir=str(Path(run_dir).resolve()),
        budget=search.time_budget_s > 0)
    return ConcurrencyLimiter(searcher, max_concurrent=search.concurrency)


def make_scheduler(experiment: Experiment) -> ASHAScheduler:
    settings = experiment.scheduler
    # time_attr="epoch": the loop's own count, which survives a resume unchanged.
    return ASHAScheduler(time_attr="epoch", metric=METRIC, mode=MODE, max_t=settings.max_epochs,
                         grace_period=settings.grace_period,
                         reduction_factor=settings.reduction_factor)


def trial_resources(experiment: Experiment, candidates: list[dict] | None = None):
    """Resources of one trial: ``resources.cpus`` for torch's threads plus, per data-loading
    worker, ``resources.worker_cpus`` (what the speed probe measured a worker to use, not a
    whole core). The probe fixes num_workers for every trial, so every trial has one shape:
    a finished trial's actor serves the next one, and no pending trial waits for CPUs that a
    trial of another shape holds."""
    base_workers = experiment.train.num_workers
    cpus, gpus = experiment.resources.cpus, experiment.resources.gpus
    per_worker = experiment.resources.worker_cpus

    def resources(config: dict) -> dict:
        params = candidates[config["candidate"]] if candidates is not None else config
        return {"cpu": round(cpus + params.get("num_workers", base_workers) * per_worker, 4),
                "gpu": gpus}

    return resources


def make_trainable(experiment: Experiment, run_dir: Path, data: SegmentationData,
                   candidates: list[dict] | None = None, finished: frozenset = frozenset()):
    # with_parameters puts the data in the object store once: a cache-backed data set pickles
    # as its path and fingerprint, and every trial maps the same cache files read-only.
    # The tests' fault injection is read here, on the driver: see sweep/faults.py.
    trainable = tune.with_parameters(train_trial, data=data, experiment=experiment,
                                     run_dir=str(Path(run_dir).resolve()),
                                     candidates=candidates, finished=finished,
                                     faults=faults_from_env())
    return tune.with_resources(trainable, trial_resources(experiment, candidates))


def trial_dirname(trial) -> str:
    return trial.trial_id  # tune/<trial_id>/: the id readers key everything by


def quiet_tune() -> None:
    """Two of Tune's checks that misfire on this trainable (read when Tune runs, not at import)."""
    # Ray forces a state snapshot at every checkpoint when num_to_keep is set (good: a resume
    # loses little) and warns each time; the warning is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A trial that ends without an epoch (out of memory at once, or one a resume skips) returns
    # no metrics; Ray's check would turn that into an error. Every real report has val_dice.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def run_config(experiment: Experiment, run_dir: Path, name: str, callbacks: list,
               max_failures: int) -> tune.RunConfig:
    return tune.RunConfig(
        name=name, storage_path=str(Path(run_dir).resolve()), callbacks=callbacks,
        verbose=0,  # progress comes from TrialStatusLog, one line per trial event
        failure_config=tune.FailureConfig(max_failures=max_failures),
        # Ray keeps the best epoch (for best.pth) and always the latest (to resume from).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute=METRIC,
                                                checkpoint_score_order=MODE))


def tune_config(experiment: Experiment, run_dir: Path, storage=None) -> tune.TuneConfig:
    """Searcher, scheduler and trial count of a sweep (bench/lc_replay.py builds its replayed
    sweeps with this too, around a trainable that reads a learning-curve table)."""
    search = experiment.search
    return tune.TuneConfig(
        search_alg=make_searcher(experiment, run_dir, storage),
        scheduler=make_scheduler(experiment),
        num_samples=search.trials,  # concurrency: the searcher's ConcurrencyLimiter
        time_budget_s=search.time_budget_s or None, reuse_actors=True,
        trial_dirname_creator=trial_dirname)


def build_tuner(experiment: Experiment, run_dir: Path, data: SegmentationData,
                callbacks: list) -> tune.Tuner:
    quiet_tune()
    return tune.Tuner(make_trainable(experiment, run_dir, data),
                      tune_config=tune_config(experiment, run_dir),
                      run_config=run_config(experiment, run_dir, TUNE_DIR, callbacks,
                                            experiment.search.max_failures))


def restore_tuner(experiment: Experiment, run_dir: Path, data: SegmentationData,
                  finished: frozenset) -> tune.Tuner:
    """The interrupted sweep with its searcher state. Errored trials stay failed (Optuna was
    told so); trials recorded as finished return at once if Ray's snapshot predates them."""
    quiet_tune()
    return tune.Tuner.restore(str(Path(run_dir).resolve() / TUNE_DIR),
                              trainable=make_trainable(experiment, run_dir, data,
                                                       finished=finished),
                              resume_unfinished=True, resume_errored=False)
