"""Build the Ray Tune sweep of an experiment: OptunaSearch (TPE, seeded, its study in a journal
file under the run directory), ASHA, resources per trial and the RunConfig.

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
from sweep.experiment import Experiment
from sweep.faults import faults_from_env
from sweep.rundir import (
    COMPLETE,
    METRIC,
    MODE,
    PRUNED,
    STUDY_FILE,
    TUNE_DIR,
    TrialStorage,
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

    def __init__(self, *, max_epochs: int, trial_storage: TrialStorage, budget: bool,
                 **kwargs):
        self._max_epochs, self._trial_storage, self._budget = max_epochs, trial_storage, budget
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
                                 infeasible=infeasible_reason(self._trial_storage, trial_id),
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


def make_searcher(experiment: Experiment, run_dir: Path, storage: TrialStorage):
    import optuna

    search = experiment.search
    sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup_trials)
    searcher = SweepSearch(
        space=experiment.distributions(), metric=METRIC, mode=MODE, sampler=sampler,
        study_name=experiment.name, storage=journal_storage(run_dir),
        max_epochs=experiment.scheduler.max_epochs, trial_storage=storage,
        budget=search.time_budget_s > 0)
    return ConcurrencyLimiter(searcher, max_concurrent=search.concurrency)


def make_scheduler(experiment: Experiment) -> ASHAScheduler:
    settings = experiment.scheduler
    # time_attr="epoch": the loop's own count, which survives a resume unchanged.
    return ASHAScheduler(time_attr="epoch", metric=METRIC, mode=MODE, max_t=settings.max_epochs,
                         grace_period=settings.grace_period,
                         reduction_factor=settings.reduction_factor)


def trial_resources(experiment: Experiment, candidates: list[dict] | None = None):
    """Resources of one trial from its own config: one CPU per data-loading worker on top, so
    a num_workers=4 trial reserves what it uses instead of oversubscribing the machine."""
    base_workers = experiment.train.num_workers
    cpus, gpus = experiment.resources.cpus, experiment.resources.gpus

    def resources(config: dict) -> dict:
        params = candidates[config["candidate"]] if candidates is not None else config
        return {"cpu": cpus + params.get("num_workers", base_workers), "gpu": gpus}

    return resources


def make_trainable(experiment: Experiment, storage: TrialStorage, data: SegmentationData,
                   candidates: list[dict] | None = None, finished: frozenset = frozenset()):
    # with_parameters puts the data in the object store once; every trial reads that copy.
    # The tests' fault injection is read here, on the driver: see sweep/faults.py.
    trainable = tune.with_parameters(train_trial, data=data, experiment=experiment,
                                     storage=storage,
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


# How often the driver uploads Ray's experiment state (what `resume` restores) to a URI storage.
STATE_UPLOAD_PERIOD_S = 5


def run_config(storage: TrialStorage, name: str, callbacks: list,
               max_failures: int) -> tune.RunConfig:
    return tune.RunConfig(
        name=name, **storage.ray_storage(), callbacks=callbacks,
        verbose=0,  # progress comes from TrialStatusLog, one line per trial event
        failure_config=tune.FailureConfig(max_failures=max_failures),
        checkpoint_config=checkpoint_config(storage),
        sync_config=tune.SyncConfig(sync_period=STATE_UPLOAD_PERIOD_S))


def checkpoint_config(storage: TrialStorage) -> tune.CheckpointConfig:
    """Ray keeps the best epoch (for best.pth) and always the latest (to resume from).

    On a local or shared filesystem Ray writes its experiment state (what a resume restores)
    at once, at every checkpoint, so it may delete the older checkpoints as it goes. To a URI
    it uploads that state in the background: a driver killed meanwhile leaves a state in the
    bucket that names a checkpoint Ray has already deleted, and the trial could not resume.
    There a running trial keeps every checkpoint; TrialStatusLog prunes them to the best and
    the latest when the trial ends (rundir.prune_checkpoints)."""
    return tune.CheckpointConfig(num_to_keep=1 if storage.is_local else None,
                                 checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE)


def build_tuner(experiment: Experiment, run_dir: Path, storage: TrialStorage,
                data: SegmentationData, callbacks: list) -> tune.Tuner:
    quiet_tune()
    search = experiment.search
    tune_config = tune.TuneConfig(
        search_alg=make_searcher(experiment, run_dir, storage),
        scheduler=make_scheduler(experiment),
        num_samples=search.trials,  # concurrency: the searcher's ConcurrencyLimiter
        time_budget_s=search.time_budget_s or None, reuse_actors=True,
        trial_dirname_creator=trial_dirname)
    return tune.Tuner(make_trainable(experiment, storage, data), tune_config=tune_config,
                      run_config=run_config(storage, TUNE_DIR, callbacks, search.max_failures))


def restore_tuner(experiment: Experiment, storage: TrialStorage, data: SegmentationData,
                  finished: frozenset) -> tune.Tuner:
    """The interrupted sweep with its searcher state, read back from the trial storage. Errored
    trials stay failed (Optuna was told so); trials recorded as finished return at once if
    Ray's snapshot predates them."""
    quiet_tune()
    return tune.Tuner.restore(storage.path(TUNE_DIR),
                              storage_filesystem=storage.ray_storage()["storage_filesystem"],
                              trainable=make_trainable(experiment, storage, data,
                                                       finished=finished),
                              resume_unfinished=True, resume_errored=False)
