"""trial_status.json and the progress line: a Tune callback on the driver records each trial's
status as it changes (running, complete, pruned, infeasible, failed) and prints the tally and the
best val_dice so far."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ray import tune

from sweep.search import FINISHED, METRIC, classify
from sweep.trainable import infeasible_reason
from sweep.wandb_mirror.records import error_line

log = logging.getLogger(__name__)

STATUS_FILE = "trial_status.json"
STATUSES = ("complete", "pruned", "infeasible", "failed", "running")


def read_statuses(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_json(path: Path, payload) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    tmp.replace(path)  # readers (report, a resumed driver) never see half a file


def tally(statuses: dict) -> dict:
    counts = {status: 0 for status in STATUSES}
    for entry in statuses.values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return counts


class TrialStatusLog(tune.Callback):
    def __init__(self, run_dir: Path, max_epochs: int, total: int, budget: bool = False):
        self.run_dir, self.max_epochs, self.total, self.budget = (
            Path(run_dir).resolve(), max_epochs, total, budget)
        self.statuses: dict = {}
        self.settled: set[str] = set()
        self.best: tuple[float, str] = (-math.inf, "")

    def setup(self, **info) -> None:
        # A resumed driver starts from what the interrupted one recorded. Trials that had
        # finished stay as recorded: Ray may replay them from an older snapshot (they return
        # at once), and its stale last result must not rewrite their status.
        self.statuses = read_statuses(self.run_dir)
        self.settled = {t for t, e in self.statuses.items() if e["status"] in FINISHED}
        for trial_id, entry in self.statuses.items():
            self.best = max(self.best, (entry.get("best_val_dice", -math.inf), trial_id))

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.update(trial, "running", "training")
        self.progress()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.update(trial, "running", "retrying from its last checkpoint after an error")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if METRIC in result:
            self.best = max(self.best, (float(result[METRIC]), trial.trial_id))
        self.update(trial, "running", "training", result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        status, reason = classify(trial.last_result, False, self.max_epochs,
                                  infeasible_reason(self.run_dir, trial.trial_id), self.budget)
        self.update(trial, status, reason, trial.last_result)
        self.progress()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.update(trial, "failed", error_line(trial), trial.last_result)
        self.progress()

    def update(self, trial, status: str, reason: str, result: dict | None = None) -> None:
        if trial.trial_id in self.settled:
            return
        entry = self.statuses.setdefault(trial.trial_id, {"epochs": 0, "config": {}})
        entry.update(status=status, reason=reason, config=dict(trial.config))
        if result and result.get("epoch"):
            entry["epochs"] = int(result["epoch"])
            if METRIC in result:
                entry["best_val_dice"] = max(float(result[METRIC]),
                                             entry.get("best_val_dice", -math.inf))
        write_json(self.run_dir / STATUS_FILE, self.statuses)

    def progress(self) -> None:
        counts = tally(self.statuses)
        done = sum(counts[s] for s in STATUSES if s != "running")
        best = (f"best val_dice {self.best[0]:.4f} (trial {self.best[1]})"
                if self.best[1] else "no val_dice yet")
        log.info("progress: %d/%d trials done (%d complete, %d pruned, %d infeasible, "
                 "%d failed), %d running; %s", done, self.total, counts["complete"],
                 counts["pruned"], counts["infeasible"], counts["failed"], counts["running"], best)
