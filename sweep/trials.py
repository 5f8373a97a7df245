"""A trial's number and name: the order the searcher suggested trials in (Ray's trial ids are
random). Light on purpose: the status log and the scheduler number trials without importing
the trainable (and torch)."""
from __future__ import annotations

import re

TRIAL_NAME = re.compile(r"^trial_(\d+)$")


def trial_number(trial) -> int:
    """0-based creation order. Ray's SearchGenerator tags each trial "<counter>_<params>",
    its counter starting at 1 and restored with the searcher on a resume."""
    return int(trial.experiment_tag.split("_", 1)[0]) - 1


def trial_name(trial) -> str:
    return f"trial_{trial_number(trial):04d}"  # what tune.get_context().get_trial_name() gives


def number_from_name(name: str) -> int | None:
    match = TRIAL_NAME.match(name or "")
    return int(match.group(1)) if match else None
