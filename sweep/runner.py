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

from sweep import dashboard, exposure, runlock
from sweep.diskspace import StopWhenDiskFull, quiet_disk_full_tracebacks, sweep_disk_full
from sweep.experiment import Experiment, load_saved_experiment
from sweep.outage import (
    StopWhenStorageUnreachable,
    StorageUnreachable,
    unreachable,
)
from sweep.recover import check_before_resume
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
    RESULT_FILE,
    RETRAIN_DIR,
    RUNNING,
    SCORED,
    SPEED_PROBE_FILE,
    STATUS_FILE,
    STUDY_FILE,
    TUNE_DIR,
    TrialStorage,
    raised_within,
    read_statuses,
    read_trials,
    tally,
    write_json,
    write_statuses,
    write_text,
)
from sweep.search import build_tuner, journal_storage, restore_tuner
from sweep.speed import fix_speed_knobs
from sweep.status import TrialStatusLog
from sweep.wandb_mirror.integration import finish_mirror, mirror_callback
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
    dashboard_url: str | None = None
    report: Path | None = None
    recovered: list[str] = field(default_factory=list)  # what a resume rebuilt from Ray's results

    @property
    def trials(self) -> int:
        return sum(self.counts.values())


def sweep_callbacks(experiment: Experiment, run_dir: Path, storage: TrialStorage | None = None,
                    data=None) -> list:
    """Every Tune callback of a sweep, built in one place (the W&B mirror joins here)."""
    search = experiment.search
    storage = storage or TrialStorage(run_dir, experiment.storage, experiment.name)
    status_log = TrialStatusLog(run_dir, storage, experiment.scheduler.max_epochs, search.trials,
                                budget=search.time_budget_s > 0)
    mirror = mirror_callback(experiment, run_dir, data, status_log)  # None: W&B turned off
    stops = [StopWhenDiskFull(run_dir, storage), StopWhenStorageUnreachable(run_dir, storage)]
    return [status_log, *stops] + ([mirror] if mirror else [])


def load_data_for(experiment: Experiment):
    """The data set, from its disk cache (decoded on first use); trials receive only its path
    and fingerprint through the object store and map the same files. A searched crop is
    checked by each trial against the image sizes."""
    return experiment.train.load_data(check_crop="crop" not in experiment.space)


def run_experiment(experiment: Experiment, runs_dir: str | Path = "runs",
                   fresh: bool = False) -> RunSummary:
    run_dir = Path(runs_dir) / experiment.name
    with runlock.hold(run_dir):  # one line naming the live sweep, if there is one
        storage = open_storage(run_dir, experiment)
        if storage.exists(TUNE_DIR):
            if not fresh:
                raise ConfigError(f"{run_dir} already holds a sweep: `python -m sweep resume "
                                  f"{run_dir}` continues it, --fresh starts over (deletes it)")
            clear_run(run_dir, storage)
        return run_locked(experiment, run_dir, storage)


def run_locked(experiment: Experiment, run_dir: Path, storage: TrialStorage) -> RunSummary:
    start = time.perf_counter()
    connection = start_ray(experiment)  # first: a missing GPU fails before anything is written
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / EXPERIMENT_FILE, yaml.safe_dump(experiment.to_dict(),
                                                             sort_keys=False))
        data = load_data_for(experiment)
        experiment = fix_speed_knobs_once(experiment, run_dir, data)
        tuner = build_tuner(experiment, run_dir, storage, data,
                            sweep_callbacks(experiment, run_dir, storage, data))
        known = fit(tuner, run_dir, storage)
    finally:
        stop_ray(connection)
    return finish(experiment, run_dir, storage, known, time.perf_counter() - start,
                  connection.dashboard_url)


def resume_experiment(run_dir: str | Path) -> RunSummary:
    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_FILE).exists():
        raise ConfigError(f"{run_dir}: no sweep to resume here (no {EXPERIMENT_FILE})")
    with runlock.hold(run_dir):
        return resume_locked(run_dir)


def resume_locked(run_dir: Path) -> RunSummary:
    experiment = load_saved_experiment(run_dir / EXPERIMENT_FILE)
    storage = open_storage(run_dir, experiment)
    if not storage.is_dir(TUNE_DIR):
        raise ConfigError(f"{run_dir}: no sweep to resume here (no {TUNE_DIR}/ folder at "
                          f"{storage.where(TUNE_DIR)})")
    # Damage a resume would hide (rerun or dropped trials): repaired from Ray's results and
    # said, or refused in one line before Ray starts.
    recovered = check_before_resume(run_dir, experiment.scheduler.max_epochs,
                                    experiment.name, storage)
    for note in recovered:
        log.warning("recovered: %s", note)
    finished = frozenset(trial_id for trial_id, entry in read_statuses(run_dir).items()
                         if entry["status"] in FINISHED)
    start = time.perf_counter()
    kept = results_of(storage, finished)
    connection = start_ray(experiment)
    try:
        data = load_data_for(experiment)
        known = fit(restore_tuner(experiment, storage, data, finished), run_dir, storage)
    finally:
        stop_ray(connection)
        put_back(storage, kept)
    summary = finish(experiment, run_dir, storage, known, time.perf_counter() - start,
                     connection.dashboard_url)
    summary.recovered = recovered
    return summary


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
                          f"({' '.join(str(error).split())[:200]})") from None


def clear_run(run_dir: Path, storage: TrialStorage) -> None:
    """--fresh: the trial folders in the storage, then the driver's files: everything in the
    run directory but the lock we hold (a new file would be a second, free lock)."""
    for folder in (TUNE_DIR, CONFIRM_DIR, INFEASIBLE_DIR):
        storage.delete(folder)
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.name != LOCK_FILE:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def fit(tuner, run_dir: Path, storage: TrialStorage | None = None, again: str = "") -> set[str]:
    """Run the Tuner; a full disk ends it in one line (the sweep stays resumable), and so does
    a trial storage that cannot be reached (Ray has retried its own uploads by then).
    ``again``: the command the storage line gives (default: resume the sweep)."""
    quiet_disk_full_tracebacks()  # here too: a restored Tuner unpickles its callbacks
    try:
        return trial_ids(tuner.fit())
    except Exception as error:
        if (full := sweep_disk_full(run_dir, error, storage)) is not None:
            raise full from None
        if (stopped := raised_within(error, StorageUnreachable)) is not None:
            raise stopped from None  # StopWhenStorageUnreachable's own line
        if storage is None or storage.is_local or not is_storage_error(error):
            raise
        raise unreachable(storage, run_dir, type(error).__name__, again) from error


def is_storage_error(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return any(word in text for word in ("aws error", "s3", "curl", "connection", "network",
                                         "unreachable", "timed out"))


def trial_ids(results) -> set[str]:
    return {Path(result.path).name for result in results}  # tune/<trial_id>/


def start_ray(experiment: Experiment) -> dashboard.RayConnection:
    import ray

    connection = dashboard.connect()
    log.info(dashboard.describe(connection))
    try:
        check_resources(experiment, ray.cluster_resources())
    except ConfigError:
        stop_ray(connection)
        raise
    return connection


def stop_ray(connection: dashboard.RayConnection) -> None:
    import ray

    if connection.owned:
        ray.shutdown()
        exposure.stop_reaper()


def check_resources(experiment: Experiment, available: dict) -> None:
    """Fail now rather than leave trials pending forever on resources Ray does not have."""
    gpus, cpus = experiment.resources.gpus, experiment.resources.cpus
    if gpus > available.get("GPU", 0):
        raise ConfigError(f"resources.gpus = {gpus:g} but Ray sees {available.get('GPU', 0):g} "
                          f"GPUs (--resources.gpus=0 runs on CPU)")
    workers = min_num_workers(experiment)  # the probe may pick the cheapest candidate
    need = cpus + workers * experiment.resources.worker_cpus
    if need > available.get("CPU", 0):
        raise ConfigError(f"resources.cpus = {cpus:g}: a trial with num_workers={workers} needs "
                          f"{need:g} CPUs but Ray has {available.get('CPU', 0):g}")


def min_num_workers(experiment: Experiment) -> int:
    spec = experiment.space.get("num_workers")
    if not spec:
        return experiment.train.num_workers
    (values,) = spec.values()
    return min(values)  # a choice, or an int range's [low, high]


# ---- the end of a sweep ---------------------------------------------------------------------

def finish(experiment: Experiment, run_dir: Path, storage: TrialStorage, known: set[str],
           wall_s: float, dashboard_url: str | None) -> RunSummary:
    statuses = forget_lost_trials(run_dir, known)
    if not tally(statuses)[RUNNING]:
        fail_orphaned_study_trials(experiment, run_dir)
    records = [r for r in read_trials(storage)
               if statuses.get(r.trial_id, {}).get("status") in SCORED]
    summary = RunSummary(experiment.name, run_dir, wall_s, tally(statuses),
                         dashboard_url=dashboard_url, seeds=experiment.seeds())
    # A tie goes to the earlier trial (its number; folder names are random): the same sweep
    # picks the same best.pth every time.
    best = max(((r, r.best_row()) for r in records if r.best_row()),
               key=lambda pair: (pair[1][METRIC],
                                 -statuses.get(pair[0].trial_id, {}).get("number", 0)),
               default=None)
    if best:
        record, row = best
        storage.download(record.checkpoint_parts(row), run_dir / BEST_CHECKPOINT)
        config = experiment.trial_config(record.params, out_dir=str(run_dir / RETRAIN_DIR))
        best_config = {k: v for k, v in config.to_dict().items() if k != "load"}
        write_text(run_dir / BEST_CONFIG, seeds_header(experiment, row)
                   + yaml.safe_dump(best_config, sort_keys=False))
        summary.best_trial, summary.best_val_dice = record.trial_id, float(row[METRIC])
        summary.best_epoch, summary.best_params = int(row["epoch"]), record.params
        summary.best_std = row.get(f"{METRIC}_std")
        finish_mirror(run_dir, run_dir / BEST_CHECKPOINT, best_config,
                      {METRIC: summary.best_val_dice, "epoch": summary.best_epoch},
                      record.trial_id)
    finish_mirror(run_dir)  # W&B: every run finished, the writer waited for (no-op if done)
    summary.report = write_report_safely(run_dir)
    return summary


def seeds_header(experiment: Experiment, row: dict) -> str:
    """best_config.yaml's first lines: the seeds behind its val_dice (`seed` below is the
    first; `train --config` trains that one, --seed another)."""
    seeds = experiment.seeds()
    spread = (f" +- {row[METRIC + '_std']:.4f} (std over seeds: "
              + ", ".join(f"{s}: {row[f'{METRIC}_seed{s}']:.4f}" for s in seeds) + ")"
              if len(seeds) > 1 and f"{METRIC}_std" in row else "")
    return (f"# seeds: {seeds}\n# {METRIC} at epoch {row['epoch']}: {row[METRIC]:.4f}{spread}"
            f"{' (mean)' if len(seeds) > 1 else ''}\n")


def write_report_safely(run_dir: Path) -> Path | None:
    """The compare-runs report of a finished sweep. A report bug must not fail a sweep whose
    results are already on disk: it is logged, and `python -m sweep report` can retry."""
    from sweep.report import write_report

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
        lines.append(f"best val_dice {summary.best_val_dice:.4f}{spread} (trial "
                     f"{summary.best_trial}, epoch {summary.best_epoch}): {params}")
    else:
        lines.append("no trial produced a checkpoint")
    run = summary.run_dir
    lines += [
        f"  run dir      {run}",
        f"  best model   {run / BEST_CHECKPOINT}  (python -m sweep predict -m "
        f"{run / BEST_CHECKPOINT} -i IMAGE)",
        f"  best config  {run / BEST_CONFIG}  (python -m sweep train --config "
        f"{run / BEST_CONFIG})",
        f"  statuses     {run / STATUS_FILE}",
        f"  study        {run / STUDY_FILE}  (optuna-dashboard {run / STUDY_FILE})",
        f"  report       {summary.report or '(not written)'}  (python -m sweep report {run})",
        f"  seed check   python -m sweep confirm {run}",
    ]
    if counts.get("running"):
        lines.append(f"  unfinished   python -m sweep resume {run}")
    lines += [f"  recovered    {note}" for note in summary.recovered]
    return "\n".join(lines)
