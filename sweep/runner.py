"""Run, resume and finish a sweep; the files of docs/RUN_LAYOUT.md are written here.

``run_experiment`` and ``resume_experiment`` are plain functions returning a ``RunSummary`` (no
sys.exit, no printing beyond logging): the CLI, the tests and the benchmarks all call them.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sweep import runlock
from sweep.best_model import write_best_model
from sweep.diskspace import StopWhenDiskFull
from sweep.experiment import Experiment, load_saved_experiment
from sweep.extend import prepare_extension
from sweep.fingerprint import check_same_start, record_start, recorded_storage, sweep_already_in
from sweep.front import write_front
from sweep.outage import StopWhenStorageUnreachable
from sweep.outcome import TrialOutcomes
from sweep.pick import default_pick
from sweep.ray_session import fit, start_ray, stop_ray
from sweep.recover import check_before_resume
from sweep.result_log import result_loggers
from sweep.rundir import (
    BEST_CHECKPOINT,
    BEST_CONFIG,
    CONFIRM_DIR,
    EXPERIMENT_FILE,
    FAILED,
    FINISHED,
    INFEASIBLE_DIR,
    LOCK_FILE,
    METRIC,
    MODE,
    PARETO_CSV,
    RESULT_FILE,
    RUNNING,
    SCORED,
    SPEED_PROBE_FILE,
    STATUS_FILE,
    STUDY_FILE,
    TUNE_DIR,
    WANDB_SWEEP_FILE,
    TrialRecord,
    TrialStorage,
    is_uri,
    journal_storage,
    read_statuses,
    read_trial,
    tally,
    write_json,
    write_statuses,
    write_text,
)
from sweep.search import (
    build_tuner,
    load_data_for,
    make_sampler,
    restore_tuner,
    restored_callbacks,
    trial_outcomes,
)
from sweep.speed import fix_speed_knobs
from sweep.status import TrialStatusLog
from sweep.wandb_mirror.callback import WandbMirrorCallback
from sweep.wandb_mirror.integration import mirror_callback
from sweep.warm_start import add_warm_trials, read_sources
from training.atomic import check_writable_folder
from training.errors import error_line
from training.settings import ConfigError

log = logging.getLogger(__name__)

@dataclass
class RunSummary:
    name: str
    run_dir: Path
    wall_s: float
    counts: dict
    best_trial: str | None = None
    best_val_dice: float | None = None
    best_epoch: int | None = None
    best_params: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)  # every configuration's (search.seeds)
    best_std: float | None = None  # val_dice's std over the seeds at the best epoch
    front: int | None = None  # trials on the Pareto front (None: one objective)
    dashboard_url: str | None = None
    report: Path | None = None
    recovered: list[str] = field(default_factory=list)  # what a resume rebuilt from Ray's results
    # Stopped by SIGTERM: resumable even between two trials, when none is left running.
    stopped: bool = False

    @property
    def trials(self) -> int:
        return sum(self.counts.values())


def sweep_callbacks(experiment: Experiment, run_dir: Path, storage: TrialStorage,
                    outcomes: TrialOutcomes, data=None) -> list:
    """Every Tune callback of a sweep, built in one place (the W&B mirror joins here). The
    status log and the mirror take each trial's end from ``outcomes``, as the searcher does."""
    status_log = TrialStatusLog(run_dir, storage, outcomes, experiment.search.trials)
    # W&B's sweep metric: val_dice, or the primary of several search.objectives.
    metric, mode = (experiment.search.objective_list() or [(METRIC, MODE)])[0]
    mirror = mirror_callback(experiment, run_dir, data, outcomes, metric=metric,
                             mode=mode)  # None: W&B turned off
    stops = [StopWhenDiskFull(run_dir, storage), StopWhenStorageUnreachable(run_dir, storage)]
    return [*result_loggers(), status_log, *stops] + ([mirror] if mirror else [])


def sweep_mirror(callbacks: list) -> WandbMirrorCallback | None:
    """The W&B mirror among a sweep's callbacks, which the end of the sweep finishes (None:
    W&B turned off)."""
    return next((c for c in callbacks if isinstance(c, WandbMirrorCallback)), None)


def run_experiment(experiment: Experiment, runs_dir: str | Path = "runs",
                   fresh: bool = False) -> RunSummary:
    run_dir = Path(runs_dir) / experiment.name
    check_writable_places(experiment, run_dir)
    warm = read_sources(experiment, run_dir)  # search.warm_start: a bad source before anything
    with runlock.hold(run_dir):  # one line naming the live sweep, if there is one
        storage = open_storage(run_dir, experiment)
        # Whatever storage the earlier sweep used: a new --storage must not hide it.
        if earlier := sweep_already_in(run_dir, storage):
            if not fresh:
                raise ConfigError(f"{run_dir} already holds a sweep ({earlier}): `python -m "
                                  f"sweep resume {run_dir}` continues it, --fresh starts over "
                                  f"(deletes it)")
            clear_run(run_dir, storage, recorded_storage(run_dir))
        return run_locked(experiment, run_dir, storage, warm)


def check_writable_places(experiment: Experiment, run_dir: Path) -> None:
    """The folders a sweep writes into, each refused in one line before the run directory is
    made or Ray starts: the run directory, a trial storage on a local path, the data cache."""
    check_writable_folder(run_dir, "run dir")
    if experiment.storage and not is_uri(experiment.storage):
        check_writable_folder(Path(experiment.storage) / experiment.name, "storage")
    experiment.train.check_cache_dir()


def run_locked(experiment: Experiment, run_dir: Path, storage: TrialStorage,
               warm: list | None = None) -> RunSummary:
    start = time.perf_counter()
    connection = start_ray(experiment)  # first: a missing GPU fails before anything is written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / EXPERIMENT_FILE, yaml.safe_dump(experiment.to_dict(),
                                                             sort_keys=False))
        data = load_data_for(experiment)
        experiment = fix_speed_knobs_once(experiment, run_dir, data)
        record_start(run_dir, experiment)  # what a resume must find unchanged
        outcomes = trial_outcomes(experiment, storage)  # the searcher's and the callbacks'
        callbacks = sweep_callbacks(experiment, run_dir, storage, outcomes, data)
        tuner = build_tuner(experiment, run_dir, storage, data, outcomes, callbacks)
        add_warm_trials(run_dir, experiment.name, warm or [])  # the searcher made the study
        known = fit(tuner, run_dir, storage)
    finally:
        stop_ray(connection)
    return finish(experiment, run_dir, storage, known, time.perf_counter() - start,
                  connection.dashboard_url, sweep_mirror(callbacks))


def resume_experiment(run_dir: str | Path) -> RunSummary:
    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_FILE).exists():
        raise ConfigError(f"{run_dir}: no sweep to resume here (no {EXPERIMENT_FILE})")
    with runlock.hold(run_dir):
        return resume_locked(run_dir)


def extend_experiment(run_dir: str | Path, trials: int,
                      overrides: list[str] | tuple = ()) -> RunSummary:
    """`extend`: the sweep in ``run_dir`` raised to ``trials`` trials in all, its space changed
    by ``overrides`` (``--space.KEY=...``; sweep/extend.py), then resumed; a RunSummary of the
    whole sweep."""
    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_FILE).is_file():
        raise ConfigError(f"{run_dir}: no sweep to extend here (no {EXPERIMENT_FILE})")
    with runlock.hold(run_dir):
        experiment = load_saved_experiment(run_dir / EXPERIMENT_FILE)
        prepare_extension(run_dir, open_storage(run_dir, experiment), trials, overrides,
                          make_sampler=make_sampler)
        return resume_locked(run_dir)


def resume_locked(run_dir: Path) -> RunSummary:
    experiment = load_saved_experiment(run_dir / EXPERIMENT_FILE)
    storage = open_storage(run_dir, experiment)
    if not storage.is_dir(TUNE_DIR):
        raise ConfigError(f"{run_dir}: no sweep to resume here (no {TUNE_DIR}/ folder at "
                          f"{storage.where(TUNE_DIR)})")
    # An edited experiment.yaml or changed data would be applied in part: refused, nothing
    # written yet. A run dir from before the records existed gets them once it passes.
    recorded = check_same_start(run_dir, experiment)
    # Damage a resume would hide (rerun or dropped trials): repaired from Ray's results and
    # said, or refused in one line before Ray starts.
    recovered = check_before_resume(run_dir, experiment.scheduler.max_epochs,
                                    experiment.name, storage)
    if not recorded:
        record_start(run_dir, experiment, missing_only=True)
    for note in recovered:
        log.warning("recovered: %s", note)
    finished = frozenset(trial_id for trial_id, entry in read_statuses(run_dir).items()
                         if entry["status"] in FINISHED)
    start = time.perf_counter()
    kept = results_of(storage, finished)
    connection = start_ray(experiment)
    try:
        data = load_data_for(experiment)
        # Its callbacks (and the searcher, and their one outcome owner) are the interrupted
        # sweep's, unpickled by Tune.
        tuner = restore_tuner(experiment, run_dir, storage, data, finished)
        rebind_restored(restored_callbacks(tuner), experiment, run_dir, storage)
        retarget_restored(restored_callbacks(tuner), experiment, run_dir)
        known = fit(tuner, run_dir, storage)
    finally:
        stop_ray(connection)
        put_back(storage, kept)
    summary = finish(experiment, run_dir, storage, known, time.perf_counter() - start,
                     connection.dashboard_url, sweep_mirror(restored_callbacks(tuner)))
    summary.recovered = recovered
    return summary


def rebind_restored(callbacks: list, experiment: Experiment, run_dir: Path,
                    storage: TrialStorage) -> None:
    """The callbacks Tune unpickled for a resume write into this run directory (a copied or
    moved one writes into itself, not into the original) and share one outcome owner: those of
    a sweep saved before sweep/outcome.py existed have none. (The searcher's study and new
    trials: search.ResumedSearch.)"""
    owner = next((c.outcomes for c in callbacks if getattr(c, "outcomes", None)), None)
    owner = owner or trial_outcomes(experiment, storage)
    for callback in callbacks:
        if hasattr(callback, "relocate"):
            if getattr(callback, "outcomes", None) is None:
                callback.outcomes = owner
            callback.relocate(run_dir, storage)
        elif isinstance(callback, (StopWhenDiskFull, StopWhenStorageUnreachable)):
            callback.run_dir, callback.storage = run_dir, storage  # the folders its line names


def retarget_restored(callbacks: list, experiment: Experiment, run_dir: Path) -> None:
    """The callbacks Tune unpickled count to the trial total experiment.yaml records now, not
    the one they were built with: an extended sweep (sweep/extend.py) shows its progress out
    of the new total, and its W&B sweep config caps that many runs and lists the space the
    extension searches. A plain resume changes nothing (the totals agree)."""
    from sweep.wandb_mirror.sweep_config import wandb_parameter, write_sweep_yaml

    total = experiment.search.trials
    for callback in callbacks:
        if isinstance(callback, TrialStatusLog):
            callback.total = total
    mirror = sweep_mirror(callbacks)
    config = mirror.plan.get("sweep_config") if mirror is not None else None
    if not config:
        return
    # A changed space (extend --space.KEY=...): the W&B sweep searches the new one.
    parameters = {key: wandb_parameter(key, spec) for key, spec in experiment.space.items()}
    retargeted = {**config, "parameters": parameters,
                  **({"run_cap": total} if config.get("run_cap") is not None else {})}
    if retargeted != config:
        mirror.plan = {**mirror.plan, "sweep_config": retargeted}
        write_sweep_yaml(run_dir / WANDB_SWEEP_FILE, retargeted)


def fix_speed_knobs_once(experiment: Experiment, run_dir: Path, data) -> Experiment:
    """The speed probe (sweep/speed.py): num_workers and pin_memory fixed for every trial. The
    applied experiment replaces experiment.yaml, so a resume runs the same shapes unprobed."""
    import ray

    experiment, record = fix_speed_knobs(experiment, data, ray.cluster_resources().get("CPU", 1))
    write_json(run_dir / SPEED_PROBE_FILE, record)
    write_text(run_dir / EXPERIMENT_FILE, yaml.safe_dump(experiment.to_dict(), sort_keys=False))
    return experiment


def results_of(storage: TrialStorage, trial_ids: frozenset) -> dict[str, bytes]:
    """The result.json of finished trials, read before a resume (URI storage only)."""
    if storage.is_local:
        return {}
    return {t: storage.read_bytes(TUNE_DIR, t, RESULT_FILE) for t in trial_ids
            if storage.exists(TUNE_DIR, t, RESULT_FILE)}


def put_back(storage: TrialStorage, results: dict[str, bytes]) -> None:
    """A resumed Ray starts a finished trial's result.json afresh in its local staging folder
    and uploads that (empty) file over the stored one; a finished trial never adds a row, so
    what it held before the resume is put back."""
    for trial_id, data in results.items():
        if len(storage.read_bytes(TUNE_DIR, trial_id, RESULT_FILE)) < len(data):
            storage.write_bytes(data, TUNE_DIR, trial_id, RESULT_FILE)


def open_storage(run_dir: Path, experiment: Experiment) -> TrialStorage:
    """The experiment's trial storage; a URI pyarrow cannot open is the user's to fix."""
    try:
        return TrialStorage(run_dir, experiment.storage, experiment.name)
    except (OSError, ValueError) as error:  # pyarrow: unknown scheme, no such bucket, ...
        raise ConfigError(f"storage = {experiment.storage!r}: cannot open it "
                          f"({error_line(error, 200, named=False)})") from None


def clear_run(run_dir: Path, storage: TrialStorage, recorded: TrialStorage | None) -> None:
    """--fresh: the trial folders in the storage (and in the one the earlier sweep recorded,
    if another: none is left orphaned), then the driver's files: everything in the run
    directory but the lock we hold (a new file would be a second, free lock)."""
    for place in (storage, recorded):
        for folder in (TUNE_DIR, CONFIRM_DIR, INFEASIBLE_DIR):
            if place is not None:
                place.delete(folder)
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.name != LOCK_FILE:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


# ---- the end of a sweep ---------------------------------------------------------------------

def finish(experiment: Experiment, run_dir: Path, storage: TrialStorage, known: set[str],
           wall_s: float, dashboard_url: str | None,
           mirror: WandbMirrorCallback | None = None) -> RunSummary:
    """The end of a sweep (run or resume): statuses settled, best.pth and best_config.yaml from
    the best scored trial, the W&B ``mirror`` finished, the report written."""
    statuses = forget_lost_trials(run_dir, known)
    if not tally(statuses)[RUNNING]:
        fail_orphaned_study_trials(experiment, run_dir)
    summary = RunSummary(experiment.name, run_dir, wall_s, tally(statuses),
                         dashboard_url=dashboard_url, seeds=experiment.seeds())
    best_model = {}
    # Several objectives: the Pareto table, and its default pick as the model handed over.
    front = write_front_safely(experiment, run_dir, storage)
    summary.front = None if front is None else len(front)
    picked = default_pick(experiment, front)
    if best := ((picked.record, picked.row) if picked else best_of(storage, statuses)):
        record, row = best
        primary = experiment.search.objective_list()[0][0] if picked else ""
        note = (f"the default pick of the Pareto front: its best {primary} (python -m sweep "
                f"pick picks another)" if picked else "")
        best_model = write_best_model(experiment, run_dir, storage, record, row, note=note)
        summary.best_trial, summary.best_val_dice = record.trial_id, float(row[METRIC])
        summary.best_epoch, summary.best_params = int(row["epoch"]), record.params
        summary.best_std = row.get(f"{METRIC}_std")
    if mirror is not None:  # W&B: the best model handed over, every run finished, waited for
        mirror.finish(**best_model)
    summary.report = write_report_safely(run_dir)
    return summary


def best_of(storage: TrialStorage, statuses: dict) -> tuple[TrialRecord, dict] | None:
    """The scored trial (complete or pruned) with the best epoch, and that epoch's row. Only
    those trials are read from the trial storage, which stays the record of what trained: a
    resumed sweep's trials from before the resume are in it. A tie goes to the earlier trial
    (its number; folder names are random): the same sweep picks the same best.pth every time."""
    records = [read_trial(storage, trial_id) for trial_id, entry in sorted(statuses.items())
               if entry["status"] in SCORED]
    return max(((r, r.best_row()) for r in records if r and r.best_row()),
               key=lambda pair: (pair[1][METRIC],
                                 -statuses[pair[0].trial_id].get("number", 0)),
               default=None)


def write_front_safely(experiment: Experiment, run_dir: Path, storage: TrialStorage):
    """The Pareto table of a sweep with several objectives (sweep/front.py) and its points;
    None with one objective. Like the report, a fault here must not fail a finished sweep:
    logged, and `python -m sweep report` writes it again."""
    try:
        return write_front(experiment, run_dir, storage)
    except Exception as error:  # noqa: BLE001 (the trials' results are on disk already)
        log.warning("%s not written (%s: %s); retry with: python -m sweep report %s",
                    PARETO_CSV, type(error).__name__, error, run_dir)
        return None


def write_report_safely(run_dir: Path) -> Path | None:
    """The compare-runs report of a finished sweep. A report bug must not fail a sweep whose
    results are already on disk: it is logged, and `python -m sweep report` can retry."""
    from sweep.report.build import write_report

    try:
        return write_report([run_dir])["html"]
    except Exception as error:  # noqa: BLE001 (any report fault: the sweep itself succeeded)
        log.warning("report not written (%s: %s); retry with: python -m sweep report %s",
                    type(error).__name__, error, run_dir)
        return None


def forget_lost_trials(run_dir: Path, known: set[str]) -> dict:
    """A trial started after Ray's last snapshot of a killed driver is unknown to the resumed
    sweep: it will never finish, so it is recorded as failed rather than left running."""
    statuses = read_statuses(run_dir)
    for trial_id, entry in statuses.items():
        if entry["status"] == RUNNING and trial_id not in known:
            entry.update(status=FAILED, reason="lost: the driver stopped before Ray recorded "
                                                 "this trial, so a resume could not continue it")
    write_statuses(run_dir, statuses)
    return statuses


def fail_orphaned_study_trials(experiment: Experiment, run_dir: Path) -> None:
    """A driver killed between Optuna's ask and Ray's snapshot leaves a study trial that Ray
    never ran; once every Ray trial has ended, a study trial still RUNNING is such an orphan."""
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=experiment.name, storage=journal_storage(run_dir))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)


def summary_text(summary: RunSummary) -> str:
    counts = summary.counts
    lines = [f"sweep {summary.name}: {summary.trials} trials in {summary.wall_s:.0f} s "
             f"({counts['complete']} complete, {counts['pruned']} pruned, "
             f"{counts['infeasible']} infeasible, {counts['failed']} failed"
             + (f", {counts['running']} unfinished" if counts.get("running") else "") + ")"]
    if summary.best_trial:
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in summary.best_params.items())
        spread = (f" +- {summary.best_std:.4f} (mean, std over seeds {summary.seeds})"
                  if summary.best_std is not None else "")
        what = ("default pick of the Pareto front (its best primary objective, last epoch): "
                if summary.front else "best ")
        lines.append(f"{what}val_dice {summary.best_val_dice:.4f}{spread} (trial "
                     f"{summary.best_trial}, epoch {summary.best_epoch}): {params}")
    else:
        lines.append("no trial produced a checkpoint")
    run = summary.run_dir
    lines.append(f"  run dir      {run}")
    if summary.best_trial:  # finish() wrote best.pth and best_config.yaml
        lines += [f"  best model   {run / BEST_CHECKPOINT}  (python -m sweep predict -m "
                  f"{run / BEST_CHECKPOINT} -i IMAGE)",
                  f"  best config  {run / BEST_CONFIG}  (python -m sweep train --config "
                  f"{run / BEST_CONFIG})"]
    lines += [
        f"  statuses     {run / STATUS_FILE}",
        f"  study        {run / STUDY_FILE}  (optuna-dashboard {run / STUDY_FILE})",
        f"  report       {summary.report or '(not written)'}  (python -m sweep report {run})",
    ]
    if summary.front is not None:
        lines.append(f"  pareto front {run / PARETO_CSV}  ({summary.front} trial"
                     f"{'' if summary.front == 1 else 's'}; python -m sweep pick {run} "
                     f"--max METRIC=VALUE)")
    if summary.best_trial:  # a scored trial to confirm
        lines.append(f"  seed check   python -m sweep confirm {run}")
    if counts.get("running") or summary.stopped:
        lines.append(f"  unfinished   python -m sweep resume {run}")
    lines += [f"  recovered    {note}" for note in summary.recovered]
    return "\n".join(lines)
