"""What counts as "the same problem" (docs/EXTEND.md), for `extend` with a changed space and for
`search.warm_start`: the rule that refuses a change and the rule that says whether an earlier
trial is a point of the new space, in one place.

A trial measures one value of one function: the best val_dice (the mean over search.seeds seeds)
that training with the experiment's ``train:`` settings reaches within scheduler.max_epochs
epochs on the data set, ASHA comparing trials at its rungs on scheduler.metric. The space only
says where that function is searched. So a result can be reused when everything that defines
the function is unchanged, and it is told to the sampler only when its configuration lies in
the space searched now. Light on purpose (no optuna, ray or torch): extend and the warm start
check before anything is read or written.
"""
from __future__ import annotations

import json

from sweep.experiment import SPEED_KNOBS, Experiment

# `extend` restores the sweep's searcher, ASHA and callbacks as pickled when the sweep began:
# only the trial total and the space (the searcher's distributions, rewritten by extend) can
# change. Why each other section cannot, for the one-line refusal:
EXTEND_MAY_CHANGE = ("search.trials", "space.")
WHY_FIXED = {
    "train": "it changes the training itself, so the earlier trials would score another problem",
    "scheduler": "the sweep's ASHA is restored as it began, its rungs holding every earlier "
                 "trial",
    "search": "the searcher is restored as it began (its sampler, seed, lag and objectives "
              "decide the trials to come)",
    "resources": "resources.cpus sets every trial's torch threads (the last bits of a result), "
                 "and Ray restores each trial's resources as it began",
}
WHY_FIXED_ELSE = "it is restored with the sweep as it began"

# A warm start reads trials of other sweeps: the keys that define the function above must
# match. Speed knobs change speed only (sweep/speed.py fixes them per machine) and torch threads
# only the last bits of a result, so a sweep run on another machine still counts.
NOT_PROBLEM = (*SPEED_KNOBS, "threads")
PROBLEM_KEYS = ("scheduler.max_epochs", "scheduler.metric", "search.seeds",
                "search.objectives")
MISSING = object()


def may_change_on_extension(key: str) -> bool:
    return key == EXTEND_MAY_CHANGE[0] or key.startswith(EXTEND_MAY_CHANGE[1])


def why_fixed(key: str) -> str:
    return WHY_FIXED.get(key.partition(".")[0], WHY_FIXED_ELSE)


def problem_difference(theirs: Experiment, ours: Experiment) -> tuple[str, object, object] | None:
    """The first setting that makes ``theirs`` another problem than ``ours`` (key, their value,
    ours), or None when both sweeps measure the same function (the data set aside: compared by
    fingerprint). Both are validated experiments, so an older run's missing keys read as their
    defaults."""
    a, b = theirs.to_dict(), ours.to_dict()
    keys = [f"train.{key}" for key in dict.fromkeys([*b["train"], *a["train"]])
            if key not in NOT_PROBLEM] + list(PROBLEM_KEYS)
    for key in keys:
        section, _, name = key.partition(".")
        mine, other = b[section].get(name, MISSING), a[section].get(name, MISSING)
        if json.dumps(mine, sort_keys=True, default=str) != \
                json.dumps(other, sort_keys=True, default=str):
            return key, other, mine
    return None


# ---- does a trial lie in a space? ------------------------------------------------------------
def fit_to_space(params: dict, space: dict, fixed: dict) -> tuple[dict | None, str]:
    """A trial's searched ``params`` as a point of ``space`` (experiment.yaml's ``{key: {kind:
    bounds}}``), the settings it did not search being the ``fixed`` train settings: (the point,
    "") or (None, why not). A dimension the space gained takes the trial's fixed value, which
    must lie in its range; a dimension it lost must have been searched at the value now fixed
    (exactly: that is the configuration that trained)."""
    point = {}
    for key, spec in space.items():
        value = params[key] if key in params else fixed.get(key, MISSING)
        if value is MISSING or not in_space(spec, value):
            shown = "(unset)" if value is MISSING else value
            return None, f"{key}={shown} outside {describe(spec)}"
        point[key] = value
    for key in sorted(set(params) - set(space)):
        if key in fixed and params[key] != fixed[key]:
            return None, f"{key}={params[key]} but now fixed at {fixed[key]}"
    return point, ""


def in_space(spec: dict, value) -> bool:
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":  # True == 1 in Python, not in a search space
        return any(value == choice and isinstance(value, bool) == isinstance(choice, bool)
                   for choice in bounds)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "int" and value != int(value):
        return False
    return float(bounds[0]) <= value <= float(bounds[1])


def describe(spec: dict) -> str:
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        return "{choice: " + json.dumps(bounds) + "}"
    return f"{kind} [{float(bounds[0]):g}, {float(bounds[1]):g}]"
