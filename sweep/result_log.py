"""Ray's JSON and CSV result loggers (result.json, progress.csv), keeping what this driver wrote.

Ray 2.60's loggers copy a trial's file from the trial storage over the driver's local copy each
time the trial's actor starts with a checkpoint. On a resume that is right: a fresh driver has
no local copy. But it also happens each time a PAUSED trial continues in the same driver, and
reproducible sweeps pause trials at every rung (sweep/ordered_asha.py). The stored copy is the
driver's staging folder as last uploaded, in the background: a trial that continues before its
newest rows were uploaded loses them (seen in CI: a finished trial whose result.json held its
last epoch's row only, so the report, the outcome and W&B saw one epoch of two).

The driver is the only writer of these files, so a local copy is never older than the stored
one: it is kept, and the stored one fetched only when there is none. Tune adds its own loggers
only when none of their kind is given, so these replace them (sweep_callbacks)."""
from __future__ import annotations

from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class KeepLocalRows:
    """The override both loggers share: Ray's restore only when the driver has no copy."""

    def _restore_from_remote(self, file_name: str, trial) -> None:
        if Path(trial.local_path, file_name).exists():
            return  # written by this driver: at least as new as the storage's copy
        super()._restore_from_remote(file_name, trial)


class ResultJsonLog(KeepLocalRows, JsonLoggerCallback):
    """result.json: every reported row of a trial, once, in order."""


class ResultCsvLog(KeepLocalRows, CSVLoggerCallback):
    """progress.csv: the same rows as a table."""


def result_loggers() -> list:
    return [ResultJsonLog(), ResultCsvLog()]
