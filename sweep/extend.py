"""`python -m sweep extend RUN_DIR --trials N`: more trials for a sweep, in the same run directory,
Optuna study, searcher state, trial numbering and W&B sweep. Trials already finished are not run
again; trials an interrupted driver left unfinished are continued, as `resume` does.

How: Ray's `Tuner.restore` never creates trials beyond the count it saved (its SearchGenerator
restores `total_samples`; SweepSearch its own `_total`, which its lag rule reads). So before Ray
starts, the saved state is raised to N, and the sweep is then resumed as any interrupted sweep
(runner.extend_experiment calls prepare_extension, then resume_locked). The steps are ordered so
that a driver killed between two of them leaves a run directory that `extend` (or `resume`)
continues:

1. the study rewound (below), if the searcher's tells must be taken back, and rewritten under
   a changed space (further below);
2. SweepSearch's saved state: `_total` = N, early tells held again
   (searcher_state.take_back_early_tells), a changed space's distributions and sampler;
3. the SearchGenerator's saved state: `total_samples` = N, not finished;
4. the records: experiment.yaml and its fingerprint say N (and the space); extensions.json says
   where, and which trials a changed space left out.

Why the study is rewound: in reproducible mode a sweep of K trials told its last trials at once
(no more asks would come), but a sweep of N trials asks trial K having told only trials
0..K-lag. TPE must see trials K-lag+1..K-1 as running, as the N-trial sweep's TPE did, or every
trial from K on may differ. Optuna cannot untell a trial, so the journal is rewritten through
Optuna's public API with those trials RUNNING (params, intermediate values and attributes kept),
and the searcher tells them again, in order, when the lag rule allows. Then a sweep of K trials
extended to N gives the N trials a sweep of N gives (tests/test_extend.py).

A changed space (``--space.lr='{loguniform: [1.0e-5, 1.0e-3]}'``, an added choice, a removed
dimension with ``--space.KEY=null``) takes the same path: step 1 rewrites every trial of the
study under the new space (sweep/respace.py: those inside it told with the new distributions,
the others kept as FAIL, marked), step 2 gives the searcher the new distributions and a fresh
sampler, and ASHA keeps every earlier trial (its rungs are rebuilt from the trials' results).
Any other change is refused in one line naming the key, before anything is written
(sweep/same_problem.py says why each cannot be honoured; docs/EXTEND.md).
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path

import yaml

from sweep.experiment import Experiment, load_saved_experiment
from sweep.fingerprint import (
    MISSING,
    changed_keys,
    check_same_start,
    experiment_values,
    flatten,
    read_record,
    short,
)
from sweep.recover import check_before_resume, newest
from sweep.respace import Respace
from sweep.rundir import (
    EXPERIMENT_FILE,
    EXPERIMENT_FINGERPRINT_FILE,
    EXTENSIONS_FILE,
    SEARCH_GEN_STATE,
    SEARCHER_STATE,
    STUDY_FILE,
    TUNE_DIR,
    TrialStorage,
    journal_storage,
    write_json,
    write_text,
)
from sweep.same_problem import may_change_on_extension, why_fixed
from sweep.searcher_state import take_back_early_tells, use_space
from training.settings import ConfigError, merge, parse_overrides

log = logging.getLogger(__name__)

TOLD_ATTRS = ("status", "reason")  # set on a study trial when it is told (SweepSearch)


def prepare_extension(run_dir: Path, storage: TrialStorage, trials: int,
                      overrides: list[str] | tuple = (), make_sampler=None) -> Experiment:
    """Raise the sweep in ``run_dir`` (its lock held) to ``trials`` trials in all, its space
    changed by ``overrides`` (``--space.KEY=...``): checks, then steps 1-4 above;
    runner.extend_experiment then resumes it. ConfigError (one line, nothing written) when
    there is no sweep, ``trials`` is not above its total, or anything but search.trials and
    the space would change. ``make_sampler(search, scheduler)``: sweep.search's, for a changed
    space (handed in: importing sweep.search here would pull the trainable and torch in)."""
    recorded = load_saved_experiment(run_dir / EXPERIMENT_FILE)
    if not storage.is_dir(TUNE_DIR):
        raise ConfigError(f"{run_dir}: no sweep to extend here (no {TUNE_DIR}/ folder at "
                          f"{storage.where(TUNE_DIR)})")
    started, extended = check_extendable(run_dir, recorded, trials, overrides)
    before = saved_total(storage)
    # trials == before > started: an extension to `trials` stopped before its records
    # were written; running it again finishes it.
    if trials < before or trials == before <= started.search.trials:
        raise ConfigError(f"{run_dir}: the sweep already has a total of {before} trials; "
                          f"--trials is the new total and must be above it")
    respace = Respace(extended.space, extended.train.to_dict()) \
        if extended.space != started.space else None
    # Damage a resume would repair or refuse: before anything is changed.
    for note in check_before_resume(run_dir, started.scheduler.max_epochs,
                                    started.name, storage):
        log.warning("recovered: %s", note)
    sampler = fresh_sampler(extended, run_dir, make_sampler) if respace is not None else None
    raise_saved_state(run_dir, storage, extended, trials, respace, sampler)
    record_extension(run_dir, started, extended, respace)
    log.info("extending sweep %s from %d to %d trials", started.name, started.search.trials,
             trials)
    if respace is not None:
        log.info("space changed: %d earlier trial(s) outside it are kept in the report but "
                 "not told to the sampler (%s)", len(respace.outside), STUDY_FILE)
    return extended


# ---- what may change ---------------------------------------------------------------------------
def check_extendable(run_dir: Path, recorded: Experiment, trials: int,
                     overrides) -> tuple[Experiment, Experiment]:
    """(the sweep as it stands, the sweep as extended), once they differ in search.trials and
    the space at most, and the data set not at all; refused in one line naming the key
    otherwise. ``recorded``: experiment.yaml, which may have been edited since the sweep began
    (its fingerprint record says how it began; a run dir from before the record has none)."""
    saved = read_record(run_dir / EXPERIMENT_FINGERPRINT_FILE) or experiment_values(recorded)
    now = with_overrides(recorded.to_dict(), overrides, run_dir)
    now["search"] = {**now["search"], "trials": trials}
    extended = Experiment.from_dict(now, f"extend {run_dir}")  # a bad value: its own line
    fixed = [key for key in changed_keys(saved, experiment_values(extended))
             if not may_change_on_extension(key)]
    if fixed:
        raise ConfigError(refusal(run_dir, fixed[0], saved, experiment_values(extended),
                                  experiment_values(recorded)))
    values = recorded.to_dict()
    values["space"] = saved.get("space", values["space"])
    values["search"] = {**values["search"],
                        "trials": saved.get("search", {}).get("trials", recorded.search.trials)}
    started = Experiment.from_dict(values, str(run_dir / EXPERIMENT_FINGERPRINT_FILE))
    check_same_start(run_dir, started)  # now the data set alone can differ: refused
    return started, extended


def with_overrides(values: dict, overrides, run_dir: Path) -> dict:
    """experiment.yaml's values with ``--key=value`` overrides; ``--space.KEY=null`` takes KEY
    out of the space (its trials then train with train.KEY). A new distribution replaces the
    old one whole, as `run` does."""
    given = parse_overrides(list(overrides), f"extend {run_dir} (command line)")
    space = given.pop("space", {})
    values = merge(values, given)
    if not isinstance(space, dict):
        raise ConfigError(f"extend {run_dir} (command line): space must be set key by key, "
                          f"e.g. --space.lr='{{loguniform: [1.0e-5, 1.0e-3]}}'")
    values["space"] = {**values["space"], **space}
    values["space"] = {key: numbers_of(spec) for key, spec in values["space"].items()
                       if spec is not None}
    return values


def numbers_of(spec):
    """A range's bounds written as text made numbers: YAML reads 1e-5 (no dot) as text, and
    experiment.yaml should record what the searcher samples. Anything else is left to the
    validation, which names it."""
    try:
        (kind, bounds), = spec.items()
        cast = {"loguniform": float, "uniform": float, "int": int}[kind]
        return {kind: [cast(bound) if isinstance(bound, str) else bound for bound in bounds]}
    except (AttributeError, KeyError, TypeError, ValueError):
        return spec


def refusal(run_dir: Path, key: str, saved: dict, now: dict, recorded: dict) -> str:
    """One line: the key, its values, where the change came from, and why it cannot be."""
    old, new = flatten(saved).get(key, MISSING), flatten(now).get(key, MISSING)
    edited = flatten(recorded).get(key, MISSING) != old
    where = f"edited in {run_dir / EXPERIMENT_FILE}; put it back" if edited else "command line"
    return (f"extend cannot change {key} ({short(old)} -> {short(new)}, {where}): "
            f"{why_fixed(key)}; an extension changes only search.trials and space.* "
            f"(docs/EXTEND.md)")


# ---- Ray's saved state -------------------------------------------------------------------------
def saved_total(storage: TrialStorage) -> int:
    """The trial count Ray would restore (its SearchGenerator's), the sweep's true total: the
    records may lag it when an earlier extension was interrupted."""
    return load_gen_state(storage)[1]["total_samples"]


def load_gen_state(storage: TrialStorage) -> tuple[str, dict]:
    from ray import cloudpickle

    name = newest(storage, SEARCH_GEN_STATE)
    try:
        state = cloudpickle.loads(storage.read_bytes(TUNE_DIR, name)) if name else None
        int(state["total_samples"])
    except Exception as error:  # noqa: BLE001 - any damage: Ray could not restore it either
        raise ConfigError(f"{storage.where(TUNE_DIR, name or SEARCH_GEN_STATE)}: Ray's trial "
                          f"count is missing or unreadable ({type(error).__name__}), so the "
                          f"sweep cannot be extended; nothing was changed") from None
    return name, state


def raise_saved_state(run_dir: Path, storage: TrialStorage, experiment: Experiment,
                      trials: int, respace: Respace | None = None, sampler=None) -> None:
    """Steps 1-3 of the module docstring: what Ray restores becomes a sweep of ``trials``
    (searching ``respace``'s space with ``sampler``, when given)."""
    from ray import cloudpickle

    searcher_name = newest(storage, SEARCHER_STATE)
    searcher = pickle.loads(storage.read_bytes(TUNE_DIR, searcher_name))  # as Ray restores it
    taken = take_back_early_tells(searcher, trials)  # in memory: written after the study
    if taken is None:
        log.warning("%s: this sweep's searcher predates the record of its last tells; the new "
                    "trials are right but may differ from those of one sweep of %d trials",
                    run_dir, trials)
    if taken or respace is not None:
        rewind_study(run_dir, experiment.name, taken or [], respace)
    if taken:
        log.info("study: trials %s running again, told when the lag rule allows", taken)
    if respace is not None:
        use_space(searcher, respace.distributions, sampler)
    storage.write_bytes(pickle.dumps(searcher), TUNE_DIR, searcher_name)
    name, state = load_gen_state(storage)
    state.update(total_samples=trials, finished=False)
    storage.write_bytes(cloudpickle.dumps(state), TUNE_DIR, name)


def fresh_sampler(experiment: Experiment, run_dir: Path, make_sampler):
    """The sampler of a sweep whose space changed: the old one keeps what it inferred from the
    old space (TPE's intersection search space is cached by trial number). Seeded from the
    sweep's seed and the extension's index, so the same extension gives the same trials."""
    import dataclasses

    import numpy as np

    index = len(read_extensions(run_dir)) + 1
    seed = int(np.random.SeedSequence([experiment.search.seed, index]).generate_state(1)[0])
    return make_sampler(dataclasses.replace(experiment.search, seed=seed), experiment.scheduler)


def rewind_study(run_dir: Path, study_name: str, numbers: list[int],
                 respace: Respace | None = None) -> None:
    """The study as it was before trials ``numbers`` were told: they are RUNNING again, with
    their params, intermediate values and attributes but the told ones; and, with ``respace``,
    every trial rewritten under the new space (sweep/respace.py; a trial outside it is not
    rewound: it stays out). Written beside the journal and renamed over it: a reader sees the
    old study or the new one, never half. Trials are added in number order, so each keeps its
    storage id, by which the searcher's pickled optuna Trials address it. The file backend
    pickled with them remembers byte offsets of the old file; the resume gives it a fresh one
    (SweepSearch.use_journal_of)."""
    import optuna

    from sweep.respace import OUTSIDE_ATTR

    old = optuna.load_study(study_name=study_name, storage=journal_storage(run_dir))
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".extend-") as folder:
        new = optuna.create_study(study_name=study_name, directions=old.directions,
                                  storage=journal_storage(folder))
        for key, value in old.user_attrs.items():
            new.set_user_attr(key, value)
        for trial in old.get_trials(deepcopy=True):
            if respace is not None:
                trial = respace(trial)
            if trial.number in numbers and OUTSIDE_ATTR not in trial.user_attrs:
                trial = running_again(trial)
            new.add_trial(trial)
        assert [t.number for t in new.get_trials(deepcopy=False)] == \
            [t.number for t in old.get_trials(deepcopy=False)]  # numbers (and ids) kept
        os.replace(Path(folder) / STUDY_FILE, run_dir / STUDY_FILE)


def running_again(trial):
    """A told trial as it was before the tell: RUNNING, no value, no told attributes."""
    import optuna
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:
        return trial  # rewound already (an extension interrupted after step 1)
    again = optuna.trial.create_trial(
        state=TrialState.RUNNING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k not in TOLD_ATTRS},
        system_attrs=trial.system_attrs, intermediate_values=trial.intermediate_values)
    again.datetime_start = trial.datetime_start
    return again


# ---- the records -------------------------------------------------------------------------------
def record_extension(run_dir: Path, started: Experiment, extended: Experiment,
                     respace: Respace | None = None) -> None:
    """Step 4: experiment.yaml and its fingerprint say the new total and space (so `resume`
    continues the extension, and still refuses any edit), and extensions.json says where the
    sweep grew and, for a changed space, which trials it left out."""
    write_text(run_dir / EXPERIMENT_FILE, yaml.safe_dump(extended.to_dict(), sort_keys=False))
    write_json(run_dir / EXPERIMENT_FINGERPRINT_FILE, experiment_values(extended))
    history = read_extensions(run_dir)
    entry = {"from_trials": started.search.trials, "to_trials": extended.search.trials,
             "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if respace is not None:
        entry["space"] = {
            "changed": [key for key in changed_keys(experiment_values(started),
                                                    experiment_values(extended))
                        if key.startswith("space.")],
            "outside": {str(number): why for number, why in sorted(respace.outside.items())}}
    history.append(entry)
    write_json(run_dir / EXTENSIONS_FILE, history)


def read_extensions(run_dir: Path) -> list[dict]:
    """Every extension of the sweep in ``run_dir``, oldest first ([] if never extended)."""
    try:
        history = json.loads((Path(run_dir) / EXTENSIONS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return history if isinstance(history, list) else []
