"""`python -m sweep extend RUN_DIR --trials N`: more trials for a sweep, in the same run directory,
Optuna study, searcher state, trial numbering and W&B sweep. Trials already finished are not run
again; trials an interrupted driver left unfinished are continued, as `resume` does.

How: Ray's `Tuner.restore` never creates trials beyond the count it saved (its SearchGenerator
restores `total_samples`; SweepSearch its own `_total`, which its lag rule reads). So before Ray
starts, the saved state is raised to N, and the sweep is then resumed as any interrupted sweep
(runner.extend_experiment calls prepare_extension, then resume_locked). The steps are ordered so
that a driver killed between two of them leaves a run directory that `extend` (or `resume`)
continues:

1. the study rewound (below), if the searcher's tells must be taken back;
2. SweepSearch's saved state: `_total` = N, early tells held again
   (searcher_state.take_back_early_tells);
3. the SearchGenerator's saved state: `total_samples` = N, not finished;
4. the records: experiment.yaml and its fingerprint say N; extensions.json says where.

Why the study is rewound: in reproducible mode a sweep of K trials told its last trials at once
(no more asks would come), but a sweep of N trials asks trial K having told only trials
0..K-lag. TPE must see trials K-lag+1..K-1 as running, as the N-trial sweep's TPE did, or every
trial from K on may differ. Optuna cannot untell a trial, so the journal is rewritten through
Optuna's public API with those trials RUNNING (params, intermediate values and attributes kept),
and the searcher tells them again, in order, when the lag rule allows. Then a sweep of K trials
extended to N gives the N trials a sweep of N gives (tests/test_extend.py).
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
from sweep.fingerprint import changed_keys, check_same_start, experiment_values, read_record
from sweep.recover import check_before_resume, newest
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
from sweep.searcher_state import take_back_early_tells
from training.settings import ConfigError

log = logging.getLogger(__name__)

EXTENDABLE = "search.trials"  # the one setting an extension changes
TOLD_ATTRS = ("status", "reason")  # set on a study trial when it is told (SweepSearch)


def prepare_extension(run_dir: Path, storage: TrialStorage, trials: int) -> Experiment:
    """Raise the sweep in ``run_dir`` (its lock held) to ``trials`` trials in all: checks, then
    steps 1-4 above; runner.extend_experiment then resumes it. ConfigError (one line) when
    there is no sweep, ``trials`` is not above its total, or experiment.yaml was edited in
    anything but search.trials."""
    experiment = load_saved_experiment(run_dir / EXPERIMENT_FILE)
    if not storage.is_dir(TUNE_DIR):
        raise ConfigError(f"{run_dir}: no sweep to extend here (no {TUNE_DIR}/ folder at "
                          f"{storage.where(TUNE_DIR)})")
    experiment = check_extendable(run_dir, experiment)
    before, started = saved_total(storage), experiment.search.trials
    # trials == before > started: an extension to `trials` stopped before its records
    # were written; running it again finishes it.
    if trials < before or trials == before <= started:
        raise ConfigError(f"{run_dir}: the sweep already has a total of {before} trials; "
                          f"--trials is the new total and must be above it")
    # Damage a resume would repair or refuse: before anything is changed.
    for note in check_before_resume(run_dir, experiment.scheduler.max_epochs,
                                    experiment.name, storage):
        log.warning("recovered: %s", note)
    raise_saved_state(run_dir, storage, experiment, trials)
    record_extension(run_dir, experiment, trials)
    log.info("extending sweep %s from %d to %d trials", experiment.name, started, trials)
    return experiment


# ---- what may change ---------------------------------------------------------------------------
def check_extendable(run_dir: Path, experiment: Experiment) -> Experiment:
    """The experiment as the sweep began, once experiment.yaml differs from it in search.trials
    at most (and the data set not at all); refused in one line otherwise."""
    saved = read_record(run_dir / EXPERIMENT_FINGERPRINT_FILE)  # None: a run dir from before it
    if saved is not None:
        others = [key for key in changed_keys(saved, experiment_values(experiment))
                  if key != EXTENDABLE]
        if others:
            raise ConfigError(f"extend changes only {EXTENDABLE}; {', '.join(others)} changed "
                              f"in {run_dir / EXPERIMENT_FILE} since the sweep started: put "
                              f"them back (a changed space or setting is a new sweep)")
        started = saved.get("search", {}).get("trials", experiment.search.trials)
        experiment = with_trials(experiment, started)
    check_same_start(run_dir, experiment)  # now the data set alone can differ: refused
    return experiment


def with_trials(experiment: Experiment, trials: int) -> Experiment:
    """The same experiment with another trial count, validated as a file would be."""
    values = experiment.to_dict()
    values["search"] = {**values["search"], "trials": trials}
    return Experiment.from_dict(values, f"extend --trials {trials}")


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
                      trials: int) -> None:
    """Steps 1-3 of the module docstring: what Ray restores becomes a sweep of ``trials``."""
    from ray import cloudpickle

    searcher_name = newest(storage, SEARCHER_STATE)
    searcher = pickle.loads(storage.read_bytes(TUNE_DIR, searcher_name))  # as Ray restores it
    taken = take_back_early_tells(searcher, trials)  # in memory: written after the study
    if taken is None:
        log.warning("%s: this sweep's searcher predates the record of its last tells; the new "
                    "trials are right but may differ from those of one sweep of %d trials",
                    run_dir, trials)
    if taken:
        rewind_study(run_dir, experiment.name, taken)
        log.info("study: trials %s running again, told when the lag rule allows", taken)
    storage.write_bytes(pickle.dumps(searcher), TUNE_DIR, searcher_name)
    name, state = load_gen_state(storage)
    state.update(total_samples=trials, finished=False)
    storage.write_bytes(cloudpickle.dumps(state), TUNE_DIR, name)


def rewind_study(run_dir: Path, study_name: str, numbers: list[int]) -> None:
    """The study as it was before trials ``numbers`` were told: they are RUNNING again, with
    their params, intermediate values and attributes but the told ones. Written beside the
    journal and renamed over it: a reader sees the old study or the new one, never half.
    Trials are added in number order, so each keeps its storage id, by which the searcher's
    pickled optuna Trials address it. The file backend pickled with them remembers byte
    offsets of the old file; the resume gives it a fresh one (SweepSearch.use_journal_of)."""
    import optuna

    old = optuna.load_study(study_name=study_name, storage=journal_storage(run_dir))
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".extend-") as folder:
        new = optuna.create_study(study_name=study_name, directions=old.directions,
                                  storage=journal_storage(folder))
        for key, value in old.user_attrs.items():
            new.set_user_attr(key, value)
        for trial in old.get_trials(deepcopy=True):
            new.add_trial(running_again(trial) if trial.number in numbers else trial)
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
def record_extension(run_dir: Path, experiment: Experiment, trials: int) -> None:
    """Step 4: experiment.yaml and its fingerprint say the new total (so `resume` continues the
    extension, and still refuses any edit), and extensions.json says where the sweep grew."""
    extended = with_trials(experiment, trials)
    write_text(run_dir / EXPERIMENT_FILE, yaml.safe_dump(extended.to_dict(), sort_keys=False))
    write_json(run_dir / EXPERIMENT_FINGERPRINT_FILE, experiment_values(extended))
    history = read_extensions(run_dir)
    history.append({"from_trials": experiment.search.trials, "to_trials": trials,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    write_json(run_dir / EXTENSIONS_FILE, history)


def read_extensions(run_dir: Path) -> list[dict]:
    """Every extension of the sweep in ``run_dir``, oldest first ([] if never extended)."""
    try:
        history = json.loads((Path(run_dir) / EXTENSIONS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return history if isinstance(history, list) else []
