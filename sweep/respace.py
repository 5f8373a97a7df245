"""`extend` with a changed space: every trial of the study, rewritten under the new space.

Optuna cannot change a told trial's distributions, so sweep/extend.py writes the study afresh
(rewind_study) and passes each trial through ``Respace``: a trial whose configuration lies in the
new space (sweep/same_problem.py) keeps its state, values, intermediate values and attributes
with the new distributions, and the sampler learns from it as from any trial of the space; one
outside it is kept as FAIL, marked with ``OUTSIDE_ATTR``, and is not told.

Why FAIL for a trial outside the space: it must keep its place, since its number is the
trial's number in Tune and the report, and the searcher's pickled optuna Trials address the
trials after it by storage id (trials are re-added in number order). Optuna has no state for
"kept but ignored": COMPLETE or PRUNED would be told; RUNNING is what TPE's constant liar counts
as a bad trial in progress; WAITING is handed out again by the next ask (an enqueued trial);
FAIL is what every sampler here skips (TPE, GP and NSGA-II read COMPLETE and PRUNED trials,
running ones for the liar; the intersection search space likewise). It keeps no params: Optuna's
journal storage checks a new trial's parameter against the first trial that has one of that
name, whatever its state, and a CategoricalDistribution only matches the same choices, so a
trial outside a narrowed choice would fail every later ask (a replaying reader would even drop
the param silently). Its params, state and values ride in the attribute instead, so the report
still shows it and a later extension whose space holds it again restores it.
"""
from __future__ import annotations

from sweep.distributions import to_distribution
from sweep.same_problem import fit_to_space

OUTSIDE_ATTR = "outside_space"  # {"reason", "state", "values", "params"}: why, what it was
TOLD_STATES = ("COMPLETE", "PRUNED")


class Respace:
    """A study trial -> the trial to write under ``space`` (experiment.yaml's ``space:``), the
    settings a trial did not search being the ``fixed`` train settings. ``outside`` collects
    the numbers of the trials not told, and why."""

    def __init__(self, space: dict, fixed: dict):
        self.space, self.fixed = space, fixed
        self.distributions = {key: to_distribution(spec) for key, spec in space.items()}
        self.outside: dict[int, str] = {}

    def __call__(self, trial):
        from optuna.trial import TrialState

        mark = trial.user_attrs.get(OUTSIDE_ATTR)
        params = mark.get("params", {}) if mark else trial.params
        point, why = fit_to_space(params, self.space, self.fixed)
        if point is None:
            self.outside[trial.number] = why
            return trial if mark else marked(trial, why)
        state, values = trial.state, trial.values
        if mark:  # outside an earlier space: what it was before, if that was a told result
            if mark.get("state") not in TOLD_STATES:
                self.outside[trial.number] = mark.get("reason", "")
                return trial  # its end was never recorded: it stays out
            state, values = TrialState[mark["state"]], mark.get("values")
        attrs = {k: v for k, v in trial.user_attrs.items() if k != OUTSIDE_ATTR}
        return copied(trial, state=state, values=values, params=point,
                      distributions={key: self.distributions[key] for key in point},
                      user_attrs=attrs)


def marked(trial, why: str):
    """``trial`` kept, not told: FAIL, its params in the mark (the module docstring says why)."""
    from optuna.trial import TrialState

    mark = {"reason": why, "state": trial.state.name, "values": trial.values,
            "params": trial.params}
    return copied(trial, state=TrialState.FAIL, values=None, params={}, distributions={},
                  user_attrs={**trial.user_attrs, OUTSIDE_ATTR: mark})


def copied(trial, *, state, values, params: dict, distributions: dict, user_attrs: dict):
    """A new FrozenTrial for ``trial`` with the given state, values, params and attributes, its
    intermediate values, system attributes and times kept."""
    import optuna

    told = state.name in TOLD_STATES
    new = optuna.trial.create_trial(
        state=state, values=values if told else None, params=params,
        distributions=distributions, user_attrs=user_attrs, system_attrs=trial.system_attrs,
        intermediate_values=trial.intermediate_values)
    new.datetime_start = trial.datetime_start
    new.datetime_complete = trial.datetime_complete if state.is_finished() else None
    return new


def outside_of(study) -> dict[int, str]:
    """{trial number: why} of the study's trials that are outside the space and not told."""
    return {t.number: (t.user_attrs[OUTSIDE_ATTR] or {}).get("reason", "")
            for t in study.get_trials(deepcopy=False) if OUTSIDE_ATTR in t.user_attrs}
