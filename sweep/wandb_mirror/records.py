"""What the driver-side callback sends the writer: small JSON-able records, built by pure
functions (no wandb, no ray) so they are cheap on the driver and easy to test."""
from __future__ import annotations

import math
import re

from sweep.rundir import FIRST_STEP_KEY, REPORTED_AT_KEY

# Result keys that are Ray's bookkeeping rather than numbers worth a chart.
NOT_LOGGED = {"config", "done", "trial_id", "date", "hostname", "node_ip", "experiment_tag",
              "checkpoint_dir_name", "should_checkpoint"}
# Ray's own numbers: logged (the history mirrors Ray's rows) but left out of the best/ summary.
RAY_KEYS = {"timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "pid",
            "iterations_since_restore", "training_iteration",
            FIRST_STEP_KEY, REPORTED_AT_KEY}  # and the trainable's wall clocks
IMAGE_KEY = "val_images"  # the trainable reports a rendered panel's path under this key


def run_id(trial_id: str) -> str:
    """A W&B run id from a Ray trial id (W&B allows letters, digits, '-' and '_')."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", trial_id)[:64]


def run_name(experiment: str, trial_id: str) -> str:
    return f"{experiment}-{trial_id}"


def metric_row(result: dict) -> dict:
    """Every finite-or-not number of a Ray result row, by its own name (bools excluded)."""
    return {key: value for key, value in result.items()
            if key not in NOT_LOGGED and isinstance(value, (int, float))
            and not isinstance(value, bool)}


def step_of(result: dict) -> int:
    """The W&B step: the training loop's epoch, else Ray's iteration count."""
    return int(result.get("epoch", result.get("training_iteration", 0)))


def run_config(trial_config: dict, trial_id: str, experiment: str, extra: dict) -> dict:
    """The trial's resolved config plus where it came from, JSON-safe."""
    config = {key: json_safe(value) for key, value in trial_config.items()}
    return {**config, **extra, "trial_id": trial_id, "experiment": experiment}


def json_safe(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def best_summary(rows: list[dict], metric: str, mode: str) -> dict:
    """``best/<key>`` values from the row where ``metric`` was best (NaN rows never win)."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float))
              and not math.isnan(r[metric])]
    if not scored:
        return {}
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda r: r[metric])
    return {f"best/{key}": value for key, value in best.items() if key not in RAY_KEYS}
