"""trial_status.json and the progress line: a Tune callback on the driver records each trial's
status as it changes (running, complete, pruned, infeasible, failed) and prints the tally and the
best val_dice so far."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from ray import tune

from sweep.failures import ride_out
from sweep.outcome import TrialOutcomes
from sweep.rundir import (
    FINISHED,
    FIRST_STEP_KEY,
    METRIC,
    NOTICE_KEY,
    PARAMS_FILE,
    RESULT_FILE,
    RUNNING,
    STATUSES,
    TUNE_DIR,
    TrialStorage,
    best_so_far,
    prune_checkpoints,
    read_statuses,
    tally,
    write_statuses,
)
from sweep.trials import trial_name, trial_number
from training.errors import error_line

log = logging.getLogger(__name__)


class TrialStatusLog(tune.Callback):
    """Records each trial's status as it changes; an ended trial's status and reason are the
    sweep's outcome owner's (``outcomes``), the same the searcher tells Optuna."""

    def __init__(self, run_dir: Path, storage: TrialStorage, outcomes: TrialOutcomes,
                 total: int):
        self.run_dir, self.total = Path(run_dir).resolve(), total
        self.storage = storage  # the trial folders: checkpoints to prune, results to upload
        self.outcomes = outcomes
        self.statuses: dict = {}
        self.settled: set[str] = set()
        self.best: tuple[float, str] = (-math.inf, "")
        self.unpruned: set[str] = set()  # ended trials whose checkpoints are not pruned yet

    def setup(self, **info) -> None:
        # A resumed driver starts from what the interrupted one recorded. Trials that had
        # finished stay as recorded: Ray may replay them from an older snapshot (they return
        # at once), and its stale last result must not rewrite their status.
        self.statuses = read_statuses(self.run_dir)
        self.settled = {t for t, e in self.statuses.items() if e["status"] in FINISHED}
        self.outcomes.remember({t: (e["status"], e.get("reason", ""))
                                for t, e in self.statuses.items() if t in self.settled})
        self.best = max(self.best, best_so_far(self.statuses))

    def relocate(self, run_dir: Path, storage: TrialStorage) -> None:
        """A resumed run directory that was copied or moved: Tune unpickles this callback with
        the paths of the directory it was made in; from now on it writes into ``run_dir``."""
        self.run_dir, self.storage = Path(run_dir).resolve(), storage
        self.outcomes.storage = storage

    def on_step_begin(self, iteration, trials, **info) -> None:
        self.outcomes.watch(trials)  # the searcher asks by trial id alone: see TrialOutcomes

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        # Its actor is up (new, or a finished trial's reused): the trial holds its slot now.
        self.clock(trial, placed_at=time.time())
        self.update(trial, RUNNING, "training")
        self.progress()

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        killed = self.outcomes.retry(trial)  # a worker killed for memory: no real retry
        self.update(trial, RUNNING, f"{killed}; ending" if killed
                    else "retrying from its last checkpoint after an error")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get(NOTICE_KEY):  # e.g. a damaged checkpoint it restarted without
            log.warning("%s: %s", trial_name(trial), result[NOTICE_KEY])
        if METRIC in result:
            self.best = max(self.best, (float(result[METRIC]), trial.trial_id))
        self.clock_result(trial, result)
        self.update(trial, RUNNING, "training", result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.clock(trial, ended_at=time.time())
        status, reason = self.outcomes.of_trial(trial, errored=False)
        self.save_results_now(trial)  # first: a trial recorded as ended has its rows stored
        self.update(trial, status, reason, trial.last_result)
        self.prune(trial.trial_id)
        self.progress()

    def on_experiment_end(self, trials, **info) -> None:
        self.prune()  # what an outage left unpruned

    def prune(self, trial_id: str | None = None) -> None:
        """Prune the checkpoints of an ended trial (and of any an outage left unpruned).
        Nothing may raise out of a Tune callback as a trial ends: Tune's stop_trial would file
        the finished trial as failed and, with max_failures, train it again (issue 12)."""
        pending = getattr(self, "unpruned", set())  # a callback pickled before it existed
        self.unpruned = pending | ({trial_id} if trial_id else set())
        for pruned in sorted(self.unpruned):
            try:
                prune_checkpoints(self.storage, pruned)
            except Exception as error:  # noqa: BLE001 - see the docstring; a later call retries
                log.warning("trial %s: checkpoints not pruned yet (%s)", pruned, error_line(error))
                return
            self.unpruned.discard(pruned)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.clock(trial, ended_at=time.time())
        status, reason = self.outcomes.of_trial(trial, errored=True)
        self.save_results_now(trial)
        self.update(trial, status, reason, trial.last_result)
        self.progress()

    def clock(self, trial, **times: float) -> None:
        """The trial's timeline (sweep/timeline.py reads it): placed_at (latest placement),
        first_step_at and startup_s (placement to first training step), compute_s (its epochs'
        seconds) and ended_at, wall-clock seconds."""
        if trial.trial_id not in self.settled:
            self.statuses.setdefault(trial.trial_id, {"epochs": 0, "config": {}}).update(times)

    def clock_result(self, trial, result: dict) -> None:
        entry = self.statuses.get(trial.trial_id)
        if entry is None or trial.trial_id in self.settled:
            return
        if FIRST_STEP_KEY in result and "placed_at" in entry:
            entry[FIRST_STEP_KEY] = float(result[FIRST_STEP_KEY])
            entry["startup_s"] = max(0.0, entry[FIRST_STEP_KEY] - entry["placed_at"])
        entry["compute_s"] = entry.get("compute_s", 0.0) + float(result.get("epoch_seconds", 0))

    def save_results_now(self, trial) -> None:
        """To a URI storage Ray uploads its driver-side files (result.json, params.json) in the
        background: a driver killed just after a trial ended would lose that trial's last rows,
        and a resume never reruns it. So they are uploaded as the trial ends."""
        if self.storage.is_local or not trial.local_path:
            return
        for name in (PARAMS_FILE, RESULT_FILE):
            local = Path(trial.local_path) / name
            try:
                if local.exists():
                    ride_out(lambda local=local, name=name: self.storage.upload(
                        local, TUNE_DIR, trial.trial_id, name),
                        f"trial {trial.trial_id}: uploading its {name}")
            except Exception as error:  # noqa: BLE001 - Ray's own upload retries later
                log.warning("trial %s: %s not uploaded yet (%s)", trial.trial_id, name,
                            error_line(error))

    def update(self, trial, status: str, reason: str, result: dict | None = None) -> None:
        if trial.trial_id in self.settled:
            return
        entry = self.statuses.setdefault(trial.trial_id, {"epochs": 0, "config": {}})
        entry.update(status=status, reason=reason, config=dict(trial.config),
                     number=trial_number(trial))
        if result and result.get("epoch"):
            entry["epochs"] = int(result["epoch"])
            if METRIC in result and float(result[METRIC]) > entry.get("best_val_dice",
                                                                      -math.inf):
                entry["best_val_dice"] = float(result[METRIC])  # several seeds: their mean
                if f"{METRIC}_std" in result:
                    entry["best_val_dice_std"] = float(result[f"{METRIC}_std"])
        write_statuses(self.run_dir, self.statuses)

    def progress(self) -> None:
        counts = tally(self.statuses)
        done = sum(counts[s] for s in STATUSES if s != RUNNING)
        best = (f"best val_dice {self.best[0]:.4f} (trial {self.best[1]})"
                if self.best[1] else "no val_dice yet")
        log.info("progress: %d/%d trials done (%d complete, %d pruned, %d infeasible, "
                 "%d failed), %d running; %s", done, self.total, counts["complete"],
                 counts["pruned"], counts["infeasible"], counts["failed"], counts["running"], best)
