"""Ray's async ASHA, but a restored trial brings its rung values back with it.

Ray saves no scheduler state: a resumed or extended sweep's ASHA is the copy pickled in tuner.pkl
when the sweep began, with empty rungs. Its trials would then be compared only with trials that
report after the restart: an extension's first new trial would pass every rung unopposed, and
the sweep's pruning would no longer be ASHA's over all its trials. Here each trial Tune restores
replays the rows of its result.json into its bracket (the decisions those replays return are
ignored: the trial already had them), as OrderedASHA does in reproducible mode.
"""
from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler

from sweep.rundir import read_result_rows_at


class ResumedASHA(ASHAScheduler):
    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if getattr(trial, "has_reported_at_least_once", False) and trial.path:
            self.replay(trial)

    def replay(self, trial) -> None:
        """Record a restored trial's rung values from its own result.json (storage: Ray's)."""
        filesystem = getattr(getattr(trial, "storage", None), "storage_filesystem", None)
        bracket = self._trial_info[trial.trial_id]
        for row in read_result_rows_at(trial.path, filesystem):
            if row.get(self._time_attr) is not None and row.get(self._metric) is not None:
                bracket.on_result(trial, row[self._time_attr],
                                  self._metric_op * row[self._metric])
