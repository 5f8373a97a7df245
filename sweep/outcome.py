"""How a trial ended, decided once per trial: ``verdict`` is the rule (complete, pruned,
infeasible, failed: rundir's vocabulary) and ``TrialOutcomes`` the one owner that applies it to
each trial of a sweep, for every reader alike: the searcher's tell (Optuna's state and the
trial's status and reason attributes), the status log (trial_status.json, and so the report)
and the W&B mirror. The way Optuna sets a TrialState in one place and everything reads it.

Light on purpose (no ray): resume's recovery and the report apply the same rule to stored rows.
"""
from __future__ import annotations

import logging

from sweep.failures import (
    NO_ERROR_TEXT,
    failure_reason,
    is_out_of_memory,
    memory_kill_reason,
    trial_error_text,
)
from sweep.rundir import (
    COMPLETE,
    FAILED,
    INFEASIBLE,
    PRUNED,
    TrialStorage,
    infeasible_reason,
    record_infeasible,
)
from training.errors import error_line

log = logging.getLogger(__name__)


def verdict(last_result: dict | None, *, errored: bool, max_epochs: int,
            infeasible: str | None = None, error_text: str = "",
            budget: bool = False) -> tuple[str, str]:
    """(status, reason) of a trial that ended. ``infeasible`` is the reason the trainable
    recorded (``infeasible_reason``); an error whose text says out-of-memory counts too (a
    worker killed for memory: failures.memory_kill_reason)."""
    if infeasible:
        return INFEASIBLE, infeasible
    if errored:
        if is_out_of_memory(error_text):
            return INFEASIBLE, error_text
        return FAILED, error_text or NO_ERROR_TEXT
    epochs = int((last_result or {}).get("epoch") or 0)
    if epochs >= max_epochs:
        return COMPLETE, f"trained all {max_epochs} epochs"
    by = "ASHA or the time budget" if budget else "ASHA"
    return PRUNED, f"stopped by {by} after epoch {epochs} of {max_epochs}"


class TrialOutcomes:
    """Each ended trial's (status, reason), decided the first time anyone asks (reading the
    trial's infeasible/ record once) and the same tuple for everyone who asks after.

    Who asks first varies. Ray Tune 2.60 tells the searcher before the callbacks when a trial
    ends (TuneController.stop_trial and _process_trial_failure: search_alg.on_trial_complete,
    then callbacks.on_trial_complete / on_trial_error), but in reproducible mode the searcher
    holds its tells back and the callbacks ask first. The searcher knows a trial by its id
    alone, so the owner keeps Tune's own list of trials (``watch``): a failed trial's error is
    in it by then (Trial.handle_error writes it before either is told).

    One per sweep, built by the runner and handed to the searcher and the callbacks. Tune
    pickles them all into one tuner.pkl, so a resumed driver unpickles one owner for them all
    too (SweepSearch.restore keeps it). Tune's trials and the decisions stay behind: what was
    decided before is trial_status.json's, which the status log hands back (``remember``)."""

    def __init__(self, storage: TrialStorage, max_epochs: int, budget: bool = False):
        self.storage = storage  # where trials record that they ran out of memory
        self.max_epochs, self.budget = max_epochs, budget
        self.decided: dict[str, tuple[str, str]] = {}
        self.trials: list = []  # Tune's Trial objects (see ``watch``)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "decided": {}, "trials": []}

    def watch(self, trials: list) -> None:
        """Tune's list of the sweep's trials, where ``decide`` finds a trial asked by id."""
        self.trials = trials

    def remember(self, recorded: dict[str, tuple[str, str]]) -> None:
        """Outcomes decided before this driver started (a resume): Ray may replay such a
        trial from an older snapshot, and its stale last result must not decide again."""
        self.decided.update(recorded)

    def forget(self, trial_id: str) -> None:
        """Tune retries a trial after an error (from its last checkpoint): its next end is
        decided anew."""
        self.decided.pop(trial_id, None)

    def retry(self, trial) -> str | None:
        """Tune is retrying ``trial`` after an error. A worker killed for memory would only be
        killed again: the trial is decided infeasible now and recorded so where the trainable
        looks first (infeasible/), so Tune's retry ends at once without training. Returns that
        reason; None for any other error, whose retry is a real one (``forget``)."""
        reason = memory_kill_reason(trial_error_text(trial))
        if reason is None:
            self.forget(trial.trial_id)
            return None
        self.decided[trial.trial_id] = (INFEASIBLE, reason)
        try:
            record_infeasible(self.storage, trial.trial_id, reason)
        except Exception as error:  # noqa: BLE001 - raised in a Tune callback it would fail
            # the sweep's bookkeeping (issue 12); unrecorded, the retry trains again.
            log.warning("trial %s: not recorded infeasible (%s); Tune retries it",
                        trial.trial_id, error_line(error))
        return reason

    def of_trial(self, trial, errored: bool) -> tuple[str, str]:
        """The outcome of a Tune trial that ended (``errored``: it raised)."""
        return self.decide(trial.trial_id, trial.last_result, errored, trial)

    def decide(self, trial_id: str, last_result: dict | None, errored: bool,
               trial=None) -> tuple[str, str]:
        if trial_id not in self.decided:
            trial = trial or next((t for t in self.trials if t.trial_id == trial_id), None)
            # Without Tune's trial (a searcher driven alone) an error has no text to read.
            error_text = failure_reason(trial_error_text(trial)) if errored and trial else ""
            self.decided[trial_id] = verdict(
                last_result, errored=errored, max_epochs=self.max_epochs,
                infeasible=infeasible_reason(self.storage, trial_id), error_text=error_text,
                budget=self.budget)
        return self.decided[trial_id]
