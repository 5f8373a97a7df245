"""Build the Ray Tune sweep of an experiment: OptunaSearch (the sampler search.sampler names,
seeded, its study in a journal file under the run directory), ASHA, resources per trial and the
RunConfig.

What Tune sees reaches Optuna as Optuna means it: a trial ASHA stopped is PRUNED (with its
intermediate values, so TPE still learns from it), one that ran out of memory is FAIL, and a
finished one is COMPLETE with the best val_dice it reached (the epoch whose checkpoint is kept).
With several ``search.objectives`` the study has one direction per objective and a finished
trial is COMPLETE with its last epoch's objectives (sweep/front.py says why that epoch); Optuna 5
takes no intermediate values in a multi-objective study (Trial.report raises
NotImplementedError), so a stopped trial is told PRUNED without any (Study.tell accepts
state=PRUNED there; its values stay None).

In reproducible mode (``search.mode``) Optuna is told in trial-number order and trial n is
suggested only once trials 0..n-lag are told, and nothing later is: TPE sees the same finished
trials (and the same running ones, which its constant liar counts) whatever order they finished
in. ``search.lag`` defaults to twice the concurrency: with lag = concurrency a slot freed by a
short trial stayed empty until the longest running trial ended (measured: 1.34x the async
sweep's wall time on the quickstart). OrderedASHA (sweep/ordered_asha.py) does the same for
the pruning decisions.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ray import tune
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from data_pipeline import SegmentationData
from sweep.experiment import RUNG_METRICS, Experiment, SchedulerSettings, SearchSettings
from sweep.faults import faults_from_env, injected_epoch_delays
from sweep.front import final_values
from sweep.mo_asha import AsyncMOASHA, OrderedMOASHA, rung_objectives
from sweep.ordered_asha import OrderedASHA, rung_levels
from sweep.outcome import TrialOutcomes
from sweep.resumed_asha import ResumedASHA
from sweep.rundir import COMPLETE, METRIC, MODE, PRUNED, TUNE_DIR, TrialStorage, journal_storage
from sweep.rung_sampler import RUNG_VALUES_ATTR, RungTPESampler
from sweep.trainable import train_trial
from sweep.trials import trial_name

log = logging.getLogger(__name__)


class SweepSearch(OptunaSearch):
    """OptunaSearch whose tells say what happened to the trial (see the module docstring).
    ``lag`` > 0 (reproducible mode): trial n is asked once trials 0..n-lag are told, and tells
    wait (buffered) until every trial before them is told and no earlier ask is pending."""

    def __init__(self, *, outcomes: TrialOutcomes, lag: int = 0, total: int = 0,
                 rung_metric: str = "", **kwargs):
        self._outcomes = outcomes  # what each trial's end was: the sweep's one decision
        self._lag, self._total = lag, total
        # ASHA's rung metric when it is not the objective: kept per epoch for the bohb sampler
        self._rung_metric = rung_metric
        self._order: dict[str, int] = {}  # Ray trial id -> trial number (order of asks)
        self._ended: dict[int, tuple] = {}  # finished, not told yet: number -> outcome
        self._told = 0  # trials 0.._told-1 are told (reproducible mode)
        # Tells released past the lag rule because the last trial was asked (number -> outcome):
        # what an extension takes back (searcher_state.take_back_early_tells).
        self._released_early: dict[int, tuple] = {}
        self._last: dict[str, dict] = {}  # last result per trial (a paused trial's stop has none)
        super().__init__(**kwargs)

    @property
    def _objectives(self) -> list[str]:
        """The metrics of a multi-objective sweep ([] for one objective): Ray's OptunaSearch
        takes a list of metrics and modes for that, and so keeps them."""
        return self.metric if isinstance(self.metric, list) else []

    def restore(self, checkpoint_path: str) -> None:
        """A resumed driver's searcher: the saved state, but the outcome owner it was built
        with (unpickled from tuner.pkl with the callbacks, so shared with them), not the
        copy pickled into the searcher's state."""
        outcomes = getattr(self, "_outcomes", None)
        super().restore(checkpoint_path)
        # A searcher saved before sweep/outcome.py existed kept the rule's settings itself.
        self._outcomes = outcomes or TrialOutcomes(self._trial_storage, self._max_epochs,
                                                   self._budget)

    def use_journal_of(self, run_dir: Path) -> None:
        """After a restore: the study is the journal file of ``run_dir``, where the resume runs.
        The saved state holds the absolute path of the journal the sweep started with (a copy
        would tell the original's study; a moved run directory has none). The unpickled study,
        every asked trial and this searcher share one storage object, so giving it the new file
        moves them all; nothing has read it since it was unpickled (it replays on first use)."""
        from optuna.storages import JournalStorage

        if isinstance(self._storage, JournalStorage):  # an in-memory study has no path
            self._storage._backend = journal_storage(run_dir)._backend

    def suggest(self, trial_id: str):
        asked = len(self._order)
        if self._lag:
            self._tell_ready()
            if asked >= self._lag and self._told <= asked - self._lag:
                return None  # trial asked-lag is not told yet: wait (Ray asks again)
        suggestion = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._order[trial_id] = asked
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        self._tell_ready()  # after the last ask, nothing more to hold back
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last[trial_id] = result
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._ot_trials or trial_id in self._completed_trials:
            return
        self._completed_trials.add(trial_id)
        outcome = (trial_id, result or self._last.get(trial_id), error)
        if not self._lag:
            self._tell_outcome(*outcome)
            return
        self._ended[self._order[trial_id]] = outcome
        self._tell_ready()

    def _tell_ready(self) -> None:
        """Tell, in trial-number order, the finished trials the next ask may see."""
        if not self._lag:
            return
        asked = len(self._order)
        limit = asked - self._lag if asked < self._total else asked
        while self._told in self._ended and self._told <= limit:
            outcome = self._ended.pop(self._told)
            if self._told > asked - self._lag:  # only because no more asks come: an
                # extension asks more, so it must be able to take this tell back
                self.__dict__.setdefault("_released_early", {})[self._told] = outcome
            self._tell_outcome(*outcome)
            self._told += 1

    def _tell_outcome(self, trial_id: str, result: dict | None, error: bool) -> None:
        status, reason = self._outcomes.decide(trial_id, result, error)
        trial = self._ot_trials[trial_id]
        try:
            if result:
                self._report(trial_id, result)  # a STOP result never reached on_trial_result
            trial.set_user_attr("ray_trial_id", trial_id)
            trial.set_user_attr("status", status)
            trial.set_user_attr("reason", reason)
            if self._objectives:
                self._tell_objectives(trial, status, result)
            else:
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

    def _tell_objectives(self, trial, status: str, result: dict | None) -> None:
        """Several objectives: a complete trial's last epoch (the seeds' mean of each)."""
        from optuna.trial import TrialState

        values = final_values(result, self._objectives) if status == COMPLETE else None
        if values is not None:
            self._ot_study.tell(trial, values)
        elif status in (COMPLETE, PRUNED):
            if status == COMPLETE:  # validated metrics the loop always reports: a bug if not
                log.warning("optuna: trial %s finished without every objective (%s) in its "
                            "last result; told as pruned", trial.number, self._objectives)
            self._ot_study.tell(trial, state=TrialState.PRUNED)
        else:
            self._ot_study.tell(trial, state=TrialState.FAIL)

    def _report(self, trial_id: str, result: dict) -> None:
        if self._objectives:
            return  # a multi-objective study takes no intermediate values (module docstring)
        step, value = result.get("epoch"), result.get(self.metric)
        trial = self._ot_trials[trial_id]
        frozen = self._frozen(trial)
        if step is None or value is None or int(step) in frozen.intermediate_values:
            return
        if frozen.state.is_finished():  # kept out of a changed space (sweep/respace.py)
            return
        trial.report(float(value), int(step))
        rung_metric = getattr(self, "_rung_metric", "")  # absent in searchers saved before it
        if rung_metric and rung_metric != self.metric and result.get(rung_metric) is not None:
            rungs = {**frozen.user_attrs.get(RUNG_VALUES_ATTR, {}),
                     str(int(step)): float(result[rung_metric])}
            trial.set_user_attr(RUNG_VALUES_ATTR, rungs)

    def _frozen(self, trial):
        return self._ot_study.get_trials(deepcopy=False)[trial.number]


def reproducible(experiment: Experiment) -> bool:
    return experiment.search.mode == "reproducible"


def make_sampler(search: SearchSettings, scheduler: SchedulerSettings | None = None):
    """The Optuna sampler that ``search`` names, seeded (bohb fits its budgets to
    ``scheduler``'s rungs)."""
    import optuna

    if search.sampler == "bohb":
        scheduler = scheduler or SchedulerSettings()
        return RungTPESampler(
            rungs=rung_levels(scheduler.grace_period, scheduler.reduction_factor,
                              scheduler.max_epochs),
            max_epochs=scheduler.max_epochs,
            rung_sign=1.0 if RUNG_METRICS[scheduler.metric] == "max" else -1.0,
            min_trials=search.startup_trials, seed=search.seed,
            multivariate=search.multivariate, constant_liar=search.constant_liar)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    if search.sampler == "nsga2":  # a generation of startup_trials trials (the first: random)
        return optuna.samplers.NSGAIISampler(seed=search.seed,
                                             population_size=max(2, search.startup_trials))
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=search.seed, n_startup_trials=search.startup_trials)
    return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup_trials,
                                      multivariate=search.multivariate,
                                      constant_liar=search.constant_liar)


def trial_outcomes(experiment: Experiment, storage: TrialStorage) -> TrialOutcomes:
    """The outcome owner of a sweep of ``experiment`` (sweep/outcome.py): one per sweep, for
    its searcher and its callbacks alike."""
    return TrialOutcomes(storage, experiment.scheduler.max_epochs,
                         budget=experiment.search.time_budget_s > 0)


def make_searcher(experiment: Experiment, run_dir: Path, storage: TrialStorage | None = None, *,
                  study_storage=None, outcomes: TrialOutcomes | None = None):
    """SweepSearch behind a ConcurrencyLimiter. ``storage``: the trial storage, where trials
    record infeasibility (default: the run directory); ``study_storage``: the study's Optuna
    storage, by default a journal file under the run directory (bench/lc_replay.py passes an
    in-memory one to replay thousands of searches); ``outcomes``: the sweep's outcome owner,
    shared with its callbacks (default: the searcher's own, over ``storage``)."""
    search = experiment.search
    storage = storage if storage is not None else TrialStorage(run_dir)
    objectives = search.objective_list()  # several: Ray's OptunaSearch takes lists
    metric, mode = ([m for m, _ in objectives], [d for _, d in objectives]) if objectives \
        else (METRIC, MODE)
    searcher = SweepSearch(
        space=experiment.distributions(), metric=metric, mode=mode,
        sampler=make_sampler(search, experiment.scheduler), study_name=experiment.name,
        storage=study_storage if study_storage is not None else journal_storage(run_dir),
        outcomes=outcomes or trial_outcomes(experiment, storage), total=search.trials,
        lag=search.effective_lag(), rung_metric=experiment.scheduler.metric)
    return ConcurrencyLimiter(searcher, max_concurrent=search.concurrency)


def make_scheduler(experiment: Experiment):
    settings = experiment.scheduler
    # time_attr="epoch": the loop's own count, which survives a resume unchanged.
    # Both rebuild their rungs from a restored trial's results (Ray saves no scheduler state):
    # a resumed or extended sweep prunes against every trial, not only the ones after it.
    objectives = getattr(experiment.search, "objectives", None) or []
    if len(objectives) > 1:  # MO-ASHA: the rungs rank objective vectors (sweep/mo_asha.py)
        kind = OrderedMOASHA if reproducible(experiment) else AsyncMOASHA
        return kind(objectives=rung_objectives(objectives, settings.metric, RUNG_METRICS),
                    time_attr="epoch", max_t=settings.max_epochs,
                    grace_period=settings.grace_period,
                    reduction_factor=settings.reduction_factor, brackets=settings.brackets)
    kind = OrderedASHA if reproducible(experiment) else ResumedASHA
    # The rung metric may differ from the objective: early val_dice is mostly 0 (the thin
    # cracks are not found yet) and ranks the eventual best trials low; val_loss does not.
    return kind(time_attr="epoch", metric=settings.metric,
                mode=RUNG_METRICS[settings.metric], max_t=settings.max_epochs,
                grace_period=settings.grace_period, reduction_factor=settings.reduction_factor,
                brackets=settings.brackets)


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


def load_data_for(experiment: Experiment) -> SegmentationData:
    """The data set, from its disk cache (decoded on first use); trials receive only its path
    and fingerprint through the object store and map the same files. A searched crop is
    checked by each trial against the image sizes."""
    return experiment.train.load_data(check_crop="crop" not in experiment.space)


def make_trainable(experiment: Experiment, storage: TrialStorage, data: SegmentationData,
                   candidates: list[dict] | None = None, finished: frozenset = frozenset()):
    # with_parameters puts the data in the object store once: a cache-backed data set pickles
    # as its path and fingerprint, and every trial maps the same cache files read-only.
    # The tests' fault injection is read here, on the driver: see sweep/faults.py.
    trainable = tune.with_parameters(train_trial, data=data, experiment=experiment,
                                     storage=storage,
                                     candidates=candidates, finished=finished,
                                     faults=faults_from_env(),
                                     epoch_delays=injected_epoch_delays())
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


def tune_config(experiment: Experiment, run_dir: Path, storage: TrialStorage | None = None, *,
                study_storage=None, outcomes: TrialOutcomes | None = None) -> tune.TuneConfig:
    """Searcher, scheduler and trial count of a sweep (bench/lc_replay.py builds its replayed
    sweeps with this too, around a trainable that reads a learning-curve table).
    ``storage``: the trial storage (default: the run directory); ``study_storage``: Optuna's;
    ``outcomes``: the sweep's outcome owner (see make_searcher)."""
    search = experiment.search
    return tune.TuneConfig(
        search_alg=make_searcher(experiment, run_dir, storage, study_storage=study_storage,
                                 outcomes=outcomes),
        scheduler=make_scheduler(experiment),
        num_samples=search.trials,  # concurrency: the searcher's ConcurrencyLimiter
        time_budget_s=search.time_budget_s or None, reuse_actors=reuse_actors(),
        trial_dirname_creator=trial_dirname, trial_name_creator=trial_name)


def reuse_actors() -> bool:
    """Whether Tune gives a finished trial's actor to the next trial (no new process: start-up
    in a fraction of a second): yes on one node, no on a cluster of several. When a node dies
    while Tune resets an actor cached there for a new trial, Ray Tune 2.60 files that trial as
    failed without a retry: the reset fails while the trial is still PENDING, which
    TuneController._process_trial_failure does not recover (seen in tests/test_cluster.py, about
    1 run in 4). An actor that fails to start is recovered, so fresh actors cost a process start
    per trial and lose nothing. Decided when the sweep starts (a resume keeps it)."""
    import ray

    if not ray.is_initialized():
        return True
    return sum(1 for node in ray.nodes() if node.get("Alive")) <= 1


def build_tuner(experiment: Experiment, run_dir: Path, storage: TrialStorage,
                data: SegmentationData, outcomes: TrialOutcomes, callbacks: list) -> tune.Tuner:
    """The sweep's Tuner; ``outcomes``: the outcome owner its ``callbacks`` share."""
    quiet_tune()
    return tune.Tuner(make_trainable(experiment, storage, data),
                      tune_config=tune_config(experiment, run_dir, storage, outcomes=outcomes),
                      run_config=run_config(storage, TUNE_DIR, callbacks,
                                            experiment.search.max_failures))


def restore_tuner(experiment: Experiment, run_dir: Path, storage: TrialStorage,
                  data: SegmentationData, finished: frozenset) -> tune.Tuner:
    """The interrupted sweep with its searcher state, read back from the trial storage, run
    where the resume runs (``run_dir``, ``storage``) even if the sweep started elsewhere (see
    ResumedSearch). Errored trials stay failed (Optuna was told so); trials recorded as
    finished return at once if Ray's snapshot predates them."""
    quiet_tune()
    tuner = tune.Tuner.restore(storage.path(TUNE_DIR),
                               storage_filesystem=storage.ray_storage()["storage_filesystem"],
                               trainable=make_trainable(experiment, storage, data,
                                                        finished=finished),
                               resume_unfinished=True, resume_errored=False)
    # Tune wraps a plain searcher in a SearchGenerator itself; handing it ours instead is the
    # one way in (Tuner.restore takes no search algorithm): TunerInternal._tune_config.
    tune_settings = tuner._local_tuner._tune_config
    tune_settings.search_alg = ResumedSearch(tune_settings.search_alg, run_dir, storage)
    return tuner


class ResumedSearch(SearchGenerator):
    """Ray's SearchGenerator for a resumed sweep, writing where the resume runs.

    Ray 2.60 moves the trials it restores to the directory Tuner.restore was given, but not
    what the generator saved: its Tune experiment keeps the storage path the sweep started
    in, and every trial created after the resume (its folder, result.json, checkpoints) went
    there: into the original of a copied run directory. The searcher's Optuna journal is saved
    by absolute path too. Once Ray has restored both, they are pointed at this run."""

    def __init__(self, searcher, run_dir: Path, storage: TrialStorage):
        super().__init__(searcher)
        self._run_dir, self._trial_storage = Path(run_dir), storage

    def restore_from_dir(self, dirpath: str) -> None:
        forget_other_runs_state(dirpath, self._trial_storage)
        super().restore_from_dir(dirpath)
        # In place, as Ray's TuneController._restore_trials moves a restored trial's storage:
        # the experiment's spec holds the same object, and each new trial copies it.
        context = self._experiment.storage
        context.storage_filesystem = self._trial_storage.fs
        context.storage_fs_path = self._trial_storage.root
        context.experiment_dir_name = TUNE_DIR
        searcher = self.searcher
        while hasattr(searcher, "searcher"):  # the ConcurrencyLimiter's SweepSearch
            searcher = searcher.searcher
        if isinstance(searcher, SweepSearch):
            searcher.use_journal_of(self._run_dir)


def forget_other_runs_state(staging_dir: str, storage: TrialStorage) -> None:
    """Before Ray reads the searcher state from its driver staging folder: only the files this
    run's tune/ holds. Ray names that folder by the Ray session and the sweep's first start, so
    a copy and its original resumed in one Ray session (a `make dashboard` head, the tests)
    share it, and Ray would restore (and upload) the state of whichever saved last."""
    ours = set(storage.listdir(TUNE_DIR))
    for path in Path(staging_dir).iterdir() if Path(staging_dir).is_dir() else ():
        if path.is_file() and path.name not in ours:
            path.unlink()


def restored_callbacks(tuner: tune.Tuner) -> list:
    """The callbacks of a restored sweep, as Tune unpickled them from its tuner.pkl (the W&B
    mirror among them, which the runner finishes). Ray 2.60's Tuner.restore takes no new
    callbacks and offers no public way to read them back: its TunerInternal (``_local_tuner``,
    set outside Ray Client mode) holds the run config."""
    return list(tuner._local_tuner.get_run_config().callbacks or [])
