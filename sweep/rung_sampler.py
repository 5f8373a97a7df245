"""A BOHB-style sampler: TPE fitted on the largest budget (ASHA rung or the full training) at
which enough trials have finished, each trial scored by what it reported at that budget.

Why not plain TPE beside ASHA: most trials end at the first rungs, PRUNED. Optuna's TPE ranks
every pruned trial below every complete one and pruned ones among themselves by the step they
reached and then the objective there, so with few complete trials its "good" group is filled
with trials that happened to survive one rung more, and its values are early val_dice, mostly
0 on our crack problems (the thin cracks are not found yet), which is what ASHA's val_loss rung
metric was chosen to avoid. The model then learns "reached epoch 2" from a coin-flip split.

Here every model is fitted at one budget, on one metric, over trials that all reached it (Falkner
et al. 2018, BOHB): at the full budget the objective (the trial's best val_dice), at a rung the
scheduler's rung metric (``RUNG_VALUES_ATTR``, written by SweepSearch), so TPE's good/bad split
is ASHA's own ranking. Only finished trials (told: not RUNNING) count: in reproducible mode the
told trials are a function of the trial number alone, so the sampler's view is too. With
``constant_liar``, running trials enter the view with the worst value seen at that budget (the
classic constant liar: concurrent trials are not suggested side by side; Optuna's own liar
needs the trial in the study it samples from, which the view is not). Below ``min_trials`` at
every budget the inner TPE samples at random (its start-up).
"""
from __future__ import annotations

import logging

import optuna
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import TrialState

RUNG_VALUES_ATTR = "rung_values"  # {epoch as str: the rung metric's value}, per trial


class _NoViewNotices(logging.Filter):
    """Optuna logs every in-memory study it creates; the sampler makes one per suggestion."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "created in memory" not in record.getMessage()


logging.getLogger("optuna.storages._in_memory").addFilter(_NoViewNotices())


class RungTPESampler(BaseSampler):
    def __init__(self, *, rungs: list[int], max_epochs: int, rung_sign: float,
                 min_trials: int, seed: int | None = None, multivariate: bool = True,
                 constant_liar: bool = True):
        self._budgets = [max_epochs, *sorted((int(r) for r in rungs if r < max_epochs),
                                             reverse=True)]
        self._max_epochs = max_epochs
        self._sign = rung_sign  # +1: higher rung metric is better (val_dice); -1: val_loss
        self._min = max(1, int(min_trials))
        self._liar = constant_liar
        self._inner = TPESampler(seed=seed, n_startup_trials=self._min,
                                 multivariate=multivariate, constant_liar=False)
        self._views: dict[int, optuna.Study] = {}  # trial number -> the study it was fitted on

    # Optuna asks infer_relative_search_space, sample_relative, then sample_independent per
    # parameter, all after before_trial: one view per trial, built there.
    def before_trial(self, study, trial) -> None:
        self._views = {trial.number: self.view(study)}

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(self._view_for(study, trial), trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(self._view_for(study, trial), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(self._view_for(study, trial), trial, param_name,
                                              param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._views.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()

    def _view_for(self, study, trial) -> optuna.Study:
        if trial.number not in self._views:
            self._views[trial.number] = self.view(study)
        return self._views[trial.number]

    # ---- the budget and the view --------------------------------------------------------------
    def budget_values(self, trial, budget: int) -> float | None:
        """What ``trial`` (finished) scored at ``budget`` epochs, higher = better; None: it did
        not get there."""
        if budget == self._max_epochs:
            if trial.state == TrialState.COMPLETE and trial.value is not None:
                return float(trial.value)
            return None
        rung = trial.user_attrs.get(RUNG_VALUES_ATTR, {}).get(str(budget))
        if rung is None:
            value = trial.intermediate_values.get(budget)  # rung metric = the objective
            return None if value is None else float(value)
        return self._sign * float(rung)

    def budget(self, trials) -> int | None:
        """The largest budget at which at least ``min_trials`` finished trials have a value."""
        for budget in self._budgets:
            if sum(self.budget_values(t, budget) is not None for t in trials) >= self._min:
                return budget
        return None

    def view(self, study) -> optuna.Study:
        """An in-memory study for the inner TPE: the finished trials with their value at the
        chosen budget, and (constant liar) running trials with the worst of those values, all
        COMPLETE; empty below min_trials."""
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        budget = self.budget(finished)
        view = optuna.create_study(direction="maximize",
                                   storage=optuna.storages.InMemoryStorage())
        if budget is None:
            return view
        scored = [(t, self.budget_values(t, budget)) for t in finished]
        scored = [(t, v) for t, v in scored if v is not None]
        if self._liar:
            worst = min(v for _, v in scored)
            scored += [(t, worst) for t in trials
                       if t.state == TrialState.RUNNING and t.params]
        view.add_trials([optuna.trial.create_trial(params=t.params,
                                                   distributions=t.distributions, value=v)
                         for t, v in scored])
        return view
