"""A full disk stops a sweep with one line (what, where, how much is free) instead of hundreds of
retried-trial tracebacks, leaves no partial files, and leaves the sweep resumable.

A trial that cannot write (its checkpoint into the run directory) would be retried, fail again
and print Ray's traceback each time; the first such error stops the sweep instead (the same way
a killed driver stops it, so ``resume`` continues once space is freed). A write of the driver's
own (statuses, Ray's results) stops it the same way.
"""
from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

from ray import tune

from sweep.failures import raised_within, trial_error_text
from sweep.rundir import CHECKPOINT_DIRS, CHECKPOINT_FILE, TUNE_DIR
from training.atomic import DiskFullError, disk_full, free_bytes, is_disk_full
from training.errors import NO_SPACE, is_disk_full_text

# Ray logs every failed trial task with its traceback here, before any callback runs.
RAY_TRIAL_LOGGER = "ray.tune.execution.tune_controller"
NEARLY_FULL_BYTES = 4 << 20


class StopWhenDiskFull(tune.Callback):
    """Raise DiskFullError out of ``Tuner.fit`` at a trial's first out-of-space error.

    ``storage``: the trial storage (sweep.rundir.TrialStorage; None: the run directory). A
    local or shared one holds the trial folders the error names; with a bucket the disk that
    filled is the trial's node's own (its working folder), which the error's path names."""

    def __init__(self, run_dir: Path, storage=None, folder: str = TUNE_DIR):
        self.run_dir, self.storage, self.folder = Path(run_dir), storage, folder
        quiet_disk_full_tracebacks()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.check(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.check(trial)

    def check(self, trial) -> None:
        text = trial_error_text(trial)
        if is_disk_full_text(text):
            raise disk_full(self.trial_folder(trial.trial_id, text))

    def trial_folder(self, trial_id: str, error_text: str) -> Path:
        if self.storage is None:
            return self.run_dir / self.folder / trial_id
        if self.storage.is_local:
            return Path(self.storage.path(self.folder, trial_id))
        named = NAMED_PATH.search(error_text)  # "...No space left on device: '/tmp/ray/...'"
        return Path(named.group(1)) if named else self.run_dir


# The path an OSError names after its message.
NAMED_PATH = re.compile(re.escape(NO_SPACE) + r": '([^']+)'")


class DropDiskFullTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not is_disk_full(error)  # its chain's errno or text


def quiet_disk_full_tracebacks() -> None:
    logger = logging.getLogger(RAY_TRIAL_LOGGER)
    if not any(isinstance(f, DropDiskFullTracebacks) for f in logger.filters):
        logger.addFilter(DropDiskFullTracebacks())


def sweep_disk_full(run_dir: Path, error: BaseException, storage=None) -> DiskFullError | None:
    """The one-line error for a sweep that stopped for want of space (None: another cause),
    after removing what the failed writes left half-done in the run directory and, when it
    is a local or shared folder elsewhere, in the trial storage."""
    folders = [Path(run_dir)]
    if storage is not None and storage.is_local and Path(storage.root) != Path(run_dir):
        folders.append(Path(storage.root))
    if not (isinstance(error, DiskFullError) or is_disk_full(error)
            or min(free_bytes(folder) for folder in folders) < NEARLY_FULL_BYTES):
        return None
    removed = sum(remove_partial_writes(folder) for folder in folders)
    named = raised_within(error, DiskFullError)  # StopWhenDiskFull's, through Tune's wrapping
    base = str(named) if named is not None else str(disk_full(run_dir))
    base = base.split("; free some space")[0]
    extra = f"; removed {removed} partial file(s)" if removed else ""
    return DiskFullError(f"{base}{extra}; the sweep stopped: free some space, then `python -m "
                         f"sweep resume {run_dir}` continues it")


def remove_partial_writes(root: Path) -> int:
    """Temporary files of interrupted writes, and checkpoint folders whose file was torn (a
    torch checkpoint is a zip file: a torn one has no central directory). ``root``: a run
    directory or a local trial storage (its tune/ and confirm/ trial folders)."""
    removed = 0
    for path in list(root.rglob("*.tmp")) + list(root.rglob(".*.tmp*")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    for checkpoint in root.glob(f"*/*/{CHECKPOINT_DIRS}/{CHECKPOINT_FILE}"):
        if not zipfile.is_zipfile(checkpoint):
            checkpoint.unlink(missing_ok=True)
            removed += 1
    return removed
