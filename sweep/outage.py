"""A trial storage (a bucket) that stays unreachable stops the sweep with one line saying what
to resume, instead of failing its trials for good.

Short outages are ridden out where they happen (failures.ride_out: up to a minute, in the driver's
callbacks and in each trial's checkpoint upload). Past that, the trial's upload fails and the
trial errors. Left to Tune, it would be retried, its restore would download its checkpoint from
the same unreachable storage and fail, and after max_failures it would be filed as failed for
good, which a resume does not undo. At the first such error the sweep stops instead (the way a
full disk stops it, sweep/diskspace.py): the trial is still one that `resume` continues from its
last checkpoint once the storage is back.
"""
from __future__ import annotations

from pathlib import Path

from ray import tune

from sweep.failures import is_storage_outage_text, trial_error_text
from training.settings import ConfigError


class StorageUnreachable(ConfigError):
    """The sweep stopped because its trial storage could not be reached (one line, exit 2)."""


def unreachable(storage, run_dir: Path, cause: str, again: str = "") -> StorageUnreachable:
    """``again``: the command that carries on (default: resume the sweep)."""
    again = again or f"python -m sweep resume {run_dir}"
    return StorageUnreachable(f"trial storage {storage.where()} unreachable ({cause}); when it "
                              f"is back: {again}")


class StopWhenStorageUnreachable(tune.Callback):
    """Raise StorageUnreachable out of ``Tuner.fit`` at a trial's first error that says its
    URI storage cannot be reached. A local or shared storage is left to Tune (and to the disk
    checks)."""

    def __init__(self, run_dir: Path, storage, again: str = ""):
        self.run_dir, self.storage, self.again = Path(run_dir), storage, again

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.check(trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.check(trial)

    def check(self, trial) -> None:
        if self.storage is None or self.storage.is_local:
            return
        if is_storage_outage_text(trial_error_text(trial)):
            raise unreachable(self.storage, self.run_dir,
                              f"trial {trial.trial_id} could not upload to it", self.again)
