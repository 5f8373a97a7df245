"""`search.warm_start: [runs/A, runs/B]`: before a sweep's first suggestion, its sampler is told
the finished trials of earlier sweeps of the same problem; nothing is trained again.

Each source is a run directory, read and never written (its study from a copy of the journal).
It must be the same problem (sweep/same_problem.py: training settings, epoch budget, ASHA's
metric, seeds, objectives; the data set by fingerprint): a bad path or another problem is one
line naming the path and the key, before the sweep starts. Its COMPLETE and PRUNED trials whose
configuration lies in this sweep's space join this sweep's study with their values,
intermediate values and rung values, marked ``WARM_ATTR``, in source order and then trial
number: the same sources give the same study, and the seeded sampler the same trials.

They are no Tune trials: Tune numbers this sweep's trials from 0 and counts only those toward
search.trials; in the study the warm trials come first (Tune's trial n is Optuna's trial k + n
after k warm trials; readers match trials by the ``ray_trial_id`` attribute, which a warm trial
lacks). warm_start.json records the sources and what was told of each, for the report and W&B.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sweep.experiment import Experiment, load_saved_experiment
from sweep.fingerprint import data_fingerprint, short
from sweep.respace import OUTSIDE_ATTR
from sweep.rundir import (
    DATA_FINGERPRINT_FILE,
    EXPERIMENT_FILE,
    STUDY_FILE,
    WARM_START_FILE,
    journal_storage,
    write_json,
)
from sweep.same_problem import fit_to_space, problem_difference
from training.errors import error_line
from training.settings import ConfigError

WARM_ATTR = "warm_start"  # {"source": the path as listed, "number": its trial number there}
TOLD_STATES = ("COMPLETE", "PRUNED")
# Attributes of the source's study that describe the source's own run, not the result.
SOURCE_ONLY_ATTRS = ("ray_trial_id", OUTSIDE_ATTR)


@dataclass
class Source:
    """One warm-start run directory, read: the trials to tell, and why the others are not."""
    path: str  # as search.warm_start lists it
    resolved: str
    experiment: str
    trials: list = field(default_factory=list)  # optuna FrozenTrials, in this sweep's space
    left_out: dict[str, int] = field(default_factory=dict)  # why -> how many

    def record(self) -> dict:
        return {"path": self.path, "resolved": self.resolved, "experiment": self.experiment,
                "told": len(self.trials), "not_told": self.left_out}


def read_sources(experiment: Experiment, run_dir: Path) -> list[Source]:
    """Every source of ``experiment``'s search.warm_start, checked and read (nothing written);
    ConfigError naming the path and the key for a bad one. [] without a warm start."""
    paths = list(experiment.search.warm_start)
    if not paths:
        return []
    ours = json.loads(json.dumps(data_fingerprint(experiment.train)))  # as the file holds it
    seen, sources = {}, []
    for index, path in enumerate(paths):
        where = f"search.warm_start[{index}] = {path}"
        resolved = Path(path).expanduser().resolve()
        if resolved == Path(run_dir).resolve():
            raise ConfigError(f"{where}: that is this sweep's own run directory")
        if resolved in seen:
            raise ConfigError(f"{where}: listed twice (also search.warm_start[{seen[resolved]}])")
        seen[resolved] = index
        sources.append(read_source(where, path, resolved, experiment, ours))
    return sources


def read_source(where: str, path: str, folder: Path, ours: Experiment,
                our_data: dict) -> Source:
    theirs = source_experiment(where, folder)
    differ = problem_difference(theirs, ours)
    if differ:
        key, there, here = differ
        raise ConfigError(f"{where} is another problem: {key} differs ({short(there)} there, "
                          f"{short(here)} here); only sweeps of the same problem can warm-start "
                          f"this one (docs/EXTEND.md)")
    try:
        their_data = json.loads((folder / DATA_FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{where}: no readable {DATA_FINGERPRINT_FILE}, so it cannot be told "
                          f"apart from a sweep of other data") from None
    if their_data != our_data:
        raise ConfigError(f"{where} is another problem: the data set differs (its "
                          f"{DATA_FINGERPRINT_FILE} is not this sweep's)")
    source = Source(path, str(folder), theirs.name)
    fixed = ours.train.to_dict()
    for trial in source_trials(where, folder, theirs.name):
        why = left_out(trial)
        point = fit_to_space(trial.params, ours.space, fixed)[0] if not why else None
        if point is None:
            why = why or "outside this sweep's space"
            source.left_out[why] = source.left_out.get(why, 0) + 1
            continue
        source.trials.append(told_here(trial, point, ours, path))
    return source


def source_experiment(where: str, folder: Path) -> Experiment:
    if not (folder / EXPERIMENT_FILE).is_file():
        raise ConfigError(f"{where}: no sweep there (no {folder / EXPERIMENT_FILE})")
    try:
        return load_saved_experiment(folder / EXPERIMENT_FILE)
    except ConfigError as error:
        raise ConfigError(f"{where}: its {EXPERIMENT_FILE} does not load ({error})") from None


def source_trials(where: str, folder: Path, name: str) -> list:
    """The source's study trials, read from a copy of its journal (Optuna's file backend
    creates files beside the one it opens; the source stays as it was)."""
    import optuna

    if not (folder / STUDY_FILE).is_file():
        raise ConfigError(f"{where}: no {STUDY_FILE} there, so no trials to tell")
    with tempfile.TemporaryDirectory(prefix="warm-start-") as copy:
        shutil.copyfile(folder / STUDY_FILE, Path(copy) / STUDY_FILE)
        try:
            study = optuna.load_study(study_name=name, storage=journal_storage(copy))
            return study.get_trials(deepcopy=True)
        except Exception as error:  # noqa: BLE001 - a journal optuna cannot replay
            raise ConfigError(f"{where}: its {STUDY_FILE} cannot be read "
                              f"({error_line(error, 120)})") from None


def left_out(trial) -> str:
    """Why a source trial is not told ('' when it is): only results of that sweep's own
    trials, finished, count."""
    if WARM_ATTR in trial.user_attrs:
        return "warm-started there (list its own source instead)"
    if trial.state.name not in TOLD_STATES:
        return f"{trial.state.name.lower()} there (no result to tell)"
    return ""


def told_here(trial, point: dict, ours: Experiment, path: str):
    """The source trial as a finished trial of this sweep's study: this space's distributions,
    its values, intermediate values and rung values, marked with where it came from."""
    import optuna
    from optuna.trial import TrialState

    distributions = ours.distributions()
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in SOURCE_ONLY_ATTRS}
    attrs[WARM_ATTR] = {"source": path, "number": trial.number,
                        "trial_id": trial.user_attrs.get("ray_trial_id", "")}
    new = optuna.trial.create_trial(
        state=TrialState[trial.state.name], values=trial.values, params=point,
        distributions={key: distributions[key] for key in point}, user_attrs=attrs,
        intermediate_values=trial.intermediate_values)
    new.datetime_start, new.datetime_complete = trial.datetime_start, trial.datetime_complete
    return new


def add_warm_trials(run_dir: Path, study_name: str, sources: list[Source]) -> int:
    """Before the first suggestion: the sources' trials into the study the searcher made, and
    warm_start.json; returns how many were told."""
    if not sources:
        return 0
    import optuna

    study = optuna.load_study(study_name=study_name, storage=journal_storage(run_dir))
    told = [trial for source in sources for trial in source.trials]
    study.add_trials(told)
    write_json(run_dir / WARM_START_FILE, {"told": len(told),
                                           "sources": [s.record() for s in sources]})
    return len(told)


def read_warm_start(run_dir: Path) -> dict | None:
    """warm_start.json of ``run_dir`` (None: no warm start, or unreadable)."""
    try:
        record = json.loads((Path(run_dir) / WARM_START_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
