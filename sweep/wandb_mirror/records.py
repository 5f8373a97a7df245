"""What the driver-side callback sends the writer: small JSON-able records, built by pure
functions (no wandb, no ray) so they are cheap on the driver and easy to test."""
from __future__ import annotations

import math
import re

# Result keys that are Ray's bookkeeping rather than numbers worth a chart.
NOT_LOGGED = {"config", "done", "trial_id", "date", "hostname", "node_ip", "experiment_tag",
              "checkpoint_dir_name", "should_checkpoint"}
# Ray's own numbers: logged (the history mirrors Ray's rows) but left out of the best/ summary.
RAY_KEYS = {"timestamp", "time_this_iter_s", "time_total_s", "time_since_restore", "pid",
            "iterations_since_restore", "training_iteration"}
IMAGE_KEY = "val_images"  # the trainable reports a rendered panel's path under this key
STATES = ("finished", "pruned", "infeasible", "failed")


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


def final_state(errored: bool, error_text: str, last_result: dict, max_epochs: int | None) -> str:
    """finished, pruned (stopped early by the scheduler), infeasible (out of memory) or failed."""
    if errored:
        return "infeasible" if is_out_of_memory(error_text) else "failed"
    # Tune marks a scheduler-stopped trial `done` too, so the epoch count tells them apart.
    if max_epochs and step_of(last_result) < max_epochs:
        return "pruned"
    return "finished"


def is_out_of_memory(text: str) -> bool:
    text = text.lower()
    return "out of memory" in text or "outofmemoryerror" in text or "infeasible" in text


def best_summary(rows: list[dict], metric: str, mode: str) -> dict:
    """``best/<key>`` values from the row where ``metric`` was best (NaN rows never win)."""
    scored = [r for r in rows if isinstance(r.get(metric), (int, float))
              and not math.isnan(r[metric])]
    if not scored:
        return {}
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda r: r[metric])
    return {f"best/{key}": value for key, value in best.items() if key not in RAY_KEYS}


def error_line(trial) -> str:
    """The last line of a Tune trial's traceback, e.g. 'error: ValueError: ...' (the sweep's
    trial_status.json reason and the W&B run's state_reason alike)."""
    text = ""
    try:
        # The driver's local error.txt first: when on_trial_error runs, get_error() (which
        # reads the storage copy) can still come back empty.
        if trial.error_file:
            with open(trial.error_file) as file:
                text = file.read()
        text = text or str(trial.get_error() or "")
    except Exception:  # noqa: BLE001 - the reason is a nicety; never fail the sweep for it
        pass
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"error: {lines[-1][:300]}" if lines else "error (see the trial's error.txt)"
