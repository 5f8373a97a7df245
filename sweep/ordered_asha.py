"""ASHA whose every decision is a function of the trials' results, never of their timing.

Ray's ASHA compares a trial reaching a rung with whatever reached that rung before it, so a
busy machine changes who is pruned. Here the trials are taken in the order they were created
(= the order the searcher suggested them): trial i's decision at rung r is ASHA's own rule (stop
when below the top 1/reduction_factor quantile) applied to the rung-r values of trials 0..i-1
only, and it is taken once each of those has reached rung r or ended without reaching it. A
trial that gets there first is PAUSED (Ray checkpoints it and frees its resources) until the
earlier trials catch up, then resumed from that checkpoint or stopped. The result is what async
ASHA gives when trials happen to arrive at every rung in trial-number order. Ties cannot fall
differently: the same values give the same quantile and the same comparisons.

With ``brackets`` > 1 (Hyperband's hedge against a first rung that misleads): trial i belongs
to bracket i % brackets, bracket b starts its rungs at grace_period * reduction_factor**b, and a
trial is compared only with the earlier trials of its bracket. Ray's ASHA draws a trial's bracket
at random instead; by number the brackets, too, are a function of the trial order alone.

The lowest-numbered running trial never waits (everything before it has ended), so the sweep
always moves. Ray's own HyperBandScheduler is synchronous too, but over fixed brackets filled
as trials arrive, which ties its brackets to arrival order again.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.rundir import read_result_rows_at
from sweep.trials import trial_number

log = logging.getLogger(__name__)


def rung_levels(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """ASHA's milestones (grace, grace*rf, ...) below max_t: a decision at max_t is moot."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    levels = [grace_period * reduction_factor ** k for k in range(count)]
    return [level for level in levels if level < max_t]


def quantile_keeps(value: float, peers: list[float], reduction_factor: float) -> bool:
    """ASHA's rule on values signed so that larger is better: not below the top
    1/reduction_factor quantile of the peers' values (a NaN is never below it)."""
    cutoff = np.nanpercentile(peers, (1 - 1 / reduction_factor) * 100)
    return not value < cutoff


class OrderedASHA(FIFOScheduler):
    _supports_buffered_results = False  # one result at a time: no epoch runs past a rung

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int,
                 reduction_factor: float, time_attr: str = "epoch", brackets: int = 1):
        super().__init__()
        self._metric, self._sign = metric, 1.0 if mode == "max" else -1.0
        self._time_attr, self._rf = time_attr, reduction_factor
        self.rungs = rung_levels(grace_period, reduction_factor, max_t)
        # bracket b's rungs; bracket 0's are self.rungs (a bracket may have none: no stopping)
        self.bracket_rungs = [[r for r in self.rungs if r >= grace_period * reduction_factor ** b]
                              for b in range(max(1, brackets))]
        self._trials: list[Trial] = []  # in creation order: trial number = index
        self._number: dict[str, int] = {}
        self._values: dict[str, dict[float, float]] = {}  # trial id -> {rung: signed value}
        self._ended: set[str] = set()
        self._waiting: dict[str, float] = {}  # paused at this rung, undecided
        self._resume: set[str] = set()  # decided to continue: resume once PAUSED
        self._settling = False

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # metric and mode are fixed at construction

    # ---- Tune's events ---------------------------------------------------------------------
    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        if trial.trial_id in self._number:
            # Tune re-adds a trial it retries after an error (TuneController._requeue_trial):
            # the same trial, PENDING, to restart from its last checkpoint. Its rung values
            # stand; adding it again would list it twice, forget them and (_replay) mark a
            # PENDING trial PAUSED behind Tune's back, which Tune asserts on.
            return
        # By number, not by arrival: a resumed sweep re-adds its trials in another order.
        self._number[trial.trial_id] = trial_number(trial)
        self._trials.append(trial)
        self._trials.sort(key=lambda t: self._number[t.trial_id])
        self._values[trial.trial_id] = {}
        if trial.has_reported_at_least_once:
            self._replay(trial)  # a resumed sweep: rebuild what this trial reported

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        self._resume.discard(trial.trial_id)
        rung = self._record(trial, result)
        if rung is None:
            return TrialScheduler.CONTINUE
        decision = self._decide(trial, rung)
        if decision is None:
            self._waiting[trial.trial_id] = rung
            decision = TrialScheduler.PAUSE
        self._settle(tune_controller)
        return decision

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._end(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._end(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        pass  # maybe retried from its checkpoint; a final error shows as Trial.ERROR

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        self._settle(tune_controller)
        for trial in self._trials:
            if trial.status == Trial.PENDING:
                return trial
        for trial in self._trials:
            if trial.status == Trial.PAUSED and trial.trial_id in self._resume:
                return trial
        return None

    def debug_string(self) -> str:
        return (f"OrderedASHA: rungs {self.bracket_rungs}, {len(self._waiting)} waiting at a "
                f"rung")

    # ---- the rule --------------------------------------------------------------------------
    def _record(self, trial: Trial, result: dict) -> float | None:
        """The rung this result reaches for the first time (its value recorded), or None."""
        epoch = result.get(self._time_attr)
        if epoch is None:
            return None
        values = self._values[trial.trial_id]
        rungs = self._rungs_of(trial)
        rung = next((r for r in reversed(rungs) if epoch >= r and r not in values), None)
        value = None if rung is None else self._rung_value(result)
        if value is None:
            return None
        values[rung] = value
        return rung

    def _rung_value(self, result: dict):
        """What a result records at a rung (None: nothing). Here the metric, signed so that
        larger is better; sweep/mo_asha.py records a vector of objectives instead."""
        value = result.get(self._metric)
        return None if value is None else self._sign * float(value)

    def _decide(self, trial: Trial, rung: float) -> str | None:
        """STOP or CONTINUE from the earlier trials' values at this rung; None: not yet."""
        peers = []
        number = self._number[trial.trial_id]
        brackets = len(getattr(self, "bracket_rungs", [self.rungs]))
        for earlier in (t for t in self._trials if self._number[t.trial_id] < number
                        and self._number[t.trial_id] % brackets == number % brackets):
            values = self._values[earlier.trial_id]
            if rung in values:
                peers.append(values[rung])
            elif not self._has_ended(earlier):
                return None  # still on its way to this rung
        if not peers:
            return TrialScheduler.CONTINUE
        keeps = self._keeps(self._values[trial.trial_id][rung], peers)
        return TrialScheduler.CONTINUE if keeps else TrialScheduler.STOP

    def _keeps(self, value, peers: list) -> bool:
        """The one comparison sweep/mo_asha.py replaces (with a rank of objective vectors)."""
        return quantile_keeps(value, peers, self._rf)

    def _rungs_of(self, trial: Trial) -> list[float]:
        brackets = getattr(self, "bracket_rungs", [self.rungs])  # pickled before brackets
        return brackets[self._number[trial.trial_id] % len(brackets)]

    def _has_ended(self, trial: Trial) -> bool:
        return trial.trial_id in self._ended or trial.status in (Trial.TERMINATED, Trial.ERROR)

    def _end(self, tune_controller, trial: Trial) -> None:
        self._ended.add(trial.trial_id)
        self._waiting.pop(trial.trial_id, None)
        self._resume.discard(trial.trial_id)
        self._settle(tune_controller)

    def _settle(self, tune_controller) -> None:
        """Decide every waiting trial whose earlier trials are all in, in trial order."""
        if self._settling:  # stop_trial below calls back into on_trial_remove
            return
        self._settling = True
        try:
            for trial in list(self._trials):
                rung = self._waiting.get(trial.trial_id)
                decision = None if rung is None else self._decide(trial, rung)
                if decision is None or trial.status != Trial.PAUSED:
                    continue  # undecided, or still being paused: the next call settles it
                del self._waiting[trial.trial_id]
                if decision == TrialScheduler.STOP:
                    tune_controller.stop_trial(trial)
                    self._ended.add(trial.trial_id)
                else:
                    self._resume.add(trial.trial_id)
        finally:
            self._settling = False

    def _replay(self, trial: Trial) -> None:
        """A restored trial's rung values from its result.json (the run directory's own). One
        that stopped at a rung may not have had its decision: it waits, PAUSED, to be decided
        again (the same way: the decision is a function of the results)."""
        storage = getattr(trial, "storage", None)  # Ray's: the trial storage, URI or local
        filesystem = getattr(storage, "storage_filesystem", None)
        for row in read_result_rows_at(trial.path, filesystem) if trial.path else []:
            self._record(trial, row)
        if trial.status in (Trial.TERMINATED, Trial.ERROR):
            self._ended.add(trial.trial_id)
            return
        last = trial.last_result.get(self._time_attr)
        if last in self._rungs_of(trial):
            self._waiting[trial.trial_id] = last
            trial.set_status(Trial.PAUSED)  # before Tune files it as pending (add_trial)
