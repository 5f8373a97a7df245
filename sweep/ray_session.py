"""Ray for one sweep command (run, resume, confirm): start it (or join a running one) with the
resources the experiment needs, run a Tuner in it with a full disk or an unreachable trial
storage ending in one line, and stop what was started."""
from __future__ import annotations

import logging
from pathlib import Path

from sweep import dashboard, exposure, sigterm
from sweep.diskspace import quiet_disk_full_tracebacks, sweep_disk_full
from sweep.experiment import Experiment
from sweep.failures import is_storage_error, quiet_memory_kill_tracebacks, raised_within
from sweep.outage import StorageUnreachable, unreachable
from sweep.rundir import TrialStorage
from training.settings import ConfigError

log = logging.getLogger(__name__)

# After a Ctrl-C, Tune logs here that the run "has been interrupted, but the most recent state
# was saved" and how to resume it with Tuner.restore(...); a sweep resumes with `python -m
# sweep resume`, which the summary names (tests/test_private_apis.py pins the text).
RAY_RUN_LOGGER = "ray.tune.tune"
RAY_RESUME_HINT = "has been interrupted, but the most recent state was saved"


class DropRayResumeHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return RAY_RESUME_HINT not in record.getMessage()


def quiet_ray_resume_hint() -> None:
    logger = logging.getLogger(RAY_RUN_LOGGER)
    if not any(isinstance(f, DropRayResumeHint) for f in logger.filters):
        logger.addFilter(DropRayResumeHint())


def start_ray(experiment: Experiment) -> dashboard.RayConnection:
    import ray

    connection = dashboard.connect()
    sigterm.catch()  # again: ray.init replaced the handler with one that aborts
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


def fit(tuner, run_dir: Path, storage: TrialStorage | None = None, again: str = "") -> set[str]:
    """Run the Tuner; a full disk ends it in one line (the sweep stays resumable), and so does
    a trial storage that cannot be reached (Ray has retried its own uploads by then).
    ``again``: the command the storage line gives (default: resume the sweep). Returns the ids
    of the trials in Tune's results."""
    quiet_disk_full_tracebacks()  # here too: a restored Tuner unpickles its callbacks
    quiet_memory_kill_tracebacks()
    quiet_ray_resume_hint()
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


def trial_ids(results) -> set[str]:
    return {Path(result.path).name for result in results}  # tune/<trial_id>/
