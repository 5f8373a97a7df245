"""Read a run directory (docs/RUN_LAYOUT.md) into DataFrames. Nothing here raises on a missing or
damaged file: what cannot be read becomes a line in ``RunData.missing`` that the report prints."""
from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from sweep import rundir
from sweep.report.space import ParamSpec, space_from_experiment, space_from_study
from training.cost_keys import COST_KEYS  # names only: no torch

log = logging.getLogger(__name__)

METRICS = ("val_dice", "val_iou", "val_loss")
HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr", "epoch_seconds",
                "samples_per_s", "gpu_peak_mem_mb", "time_total_s", "training_iteration",
                "train_samples", "timestamp", "time_this_iter_s", rundir.REPORTED_AT_KEY,
                *COST_KEYS)  # NaN in runs from before the loop measured them
TEXT_KEYS = ("gpu_ids",)  # the GPUs Ray gave the trial, "0" or "0,1" ("" on CPU)
UNKNOWN = "unknown"  # the report's word for a trial whose status file entry is missing
STATUSES = (*rundir.STATUSES, UNKNOWN)


@dataclass
class RunData:
    path: Path
    name: str
    experiment: dict
    space: dict[str, ParamSpec]
    trials: pd.DataFrame  # one row per trial: status, metric summaries, config/<key> columns
    history: pd.DataFrame  # one row per trial and epoch
    study: object | None  # optuna.Study, when study.journal could be read
    confirm: dict | None
    missing: list[str] = field(default_factory=list)

    @property
    def params(self) -> list[str]:
        """Searched parameters: the experiment's space, else config keys that vary."""
        if self.space:
            return [p for p in self.space if f"config/{p}" in self.trials]
        return varying_config_keys(self.trials)

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """search.objectives as [(metric, mode), ...], primary first; [] for a sweep of val_dice
        alone (SearchSettings.objective_list's rule, read here from the saved YAML: importing
        sweep/experiment.py would import torch)."""
        search = self.experiment.get("search")
        entries = search.get("objectives") if isinstance(search, dict) else None
        pairs = [next(iter(entry.items())) for entry in entries or []
                 if isinstance(entry, dict) and len(entry) == 1]
        return pairs if len(pairs) > 1 else []


def load_run(path: Path) -> RunData:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    missing: list[str] = []
    experiment = read_yaml(path / rundir.EXPERIMENT_FILE, missing)
    name = str(experiment.get("name") or path.name)
    history, configs, trial_dirs = read_tune_dir(rundir.storage_of(path), missing)
    status = read_json(path / rundir.STATUS_FILE, [], "trial statuses")  # noted when inferred
    max_epochs = (experiment.get("scheduler") or {}).get("max_epochs")
    trials = summarise_trials(history, configs, trial_dirs, status or {}, missing, max_epochs)
    study = read_study(path / rundir.STUDY_FILE, name, missing)
    space = space_from_experiment(experiment)
    if not space and study is not None:
        space = space_from_study(study)
    confirm = read_json(path / rundir.CONFIRM_FILE, [], "confirm runs")  # optional: no note
    return RunData(path, name, experiment, space, trials, history, study, confirm, missing)


def read_yaml(file: Path, missing: list[str]) -> dict:
    if not file.exists():
        missing.append(f"{file.name} is missing: search ranges come from the Optuna study")
        return {}
    try:
        loaded = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        missing.append(f"{file.name} is not valid YAML ({type(error).__name__})")
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_json(file: Path, missing: list[str], what: str):
    if not file.exists():
        missing.append(f"{file.name} is missing: no {what}")
        return None
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        missing.append(f"{file.name} is not valid JSON: no {what}")
        return None


SEED_PREFIX = "val_dice_seed"  # val_dice_seed<S>: one seed's val_dice in a several-seed trial
# Every metric recorded per seed (training/replicates.py): a val_iou primary objective
# shows its seeds' spread in the Pareto section too (sweep/report/pareto.py).
SEED_PREFIXES = (SEED_PREFIX, "val_iou_seed")


def read_tune_dir(storage: rundir.TrialStorage, missing: list[str]):
    """Every trial folder's result.json rows and params.json config, keyed by trial id (the
    sweep names each trial's folder by its id: tune/<trial_id>/, docs/RUN_LAYOUT.md), read
    from the run's trial storage (the run directory, a shared path or a URI)."""
    rows, configs, dirs = [], {}, {}
    tune = rundir.TUNE_DIR
    try:
        names = storage.listdir(tune) if storage.is_dir(tune) else None
    except OSError as error:  # cloud storage unreachable: the report says so
        missing.append(f"{storage.where(tune)} could not be read ({type(error).__name__})")
        names = []
    if names is None:
        missing.append(f"{tune}/ is missing: no trial results")
        names = []
    for trial_id in names:
        has = {f: storage.exists(tune, trial_id, f) for f in (rundir.PARAMS_FILE,
                                                                rundir.RESULT_FILE)}
        if not any(has.values()):
            continue
        results = read_result_lines(storage, trial_id, missing) if has[rundir.RESULT_FILE] \
            else []
        config = read_storage_json(storage, tune, trial_id, rundir.PARAMS_FILE) \
            if has[rundir.PARAMS_FILE] else None
        if config is None and results:
            config = results[-1].get("config")
        configs[trial_id] = config if isinstance(config, dict) else {}
        dirs[trial_id] = trial_id
        for row in results:
            seeds = {k: row[k] for k in row if k.startswith(SEED_PREFIXES)}  # search.seeds > 1
            rows.append({"trial_id": trial_id, NODE_COLUMN: row.get(rundir.NODE_KEY),
                         **{k: row.get(k) for k in (*HISTORY_KEYS, *TEXT_KEYS)}, **seeds})
    history = pd.DataFrame(rows)
    history = history.reindex(columns=list(dict.fromkeys(
        ["trial_id", NODE_COLUMN, *HISTORY_KEYS, *TEXT_KEYS, *history.columns])))
    history["gpu_ids"] = history["gpu_ids"].fillna("").astype(str)
    return _numeric(history), configs, dirs


NODE_COLUMN = "node"  # the Ray node (id) that ran an epoch


def read_storage_json(storage: rundir.TrialStorage, *parts: str):
    try:
        return json.loads(storage.read_text(*parts))
    except (OSError, json.JSONDecodeError):
        return None


def _numeric(history: pd.DataFrame) -> pd.DataFrame:
    for column in HISTORY_KEYS:
        history[column] = pd.to_numeric(history[column], errors="coerce")
    if history["epoch"].isna().any():  # the loop's own epoch, else Ray's iteration count
        history["epoch"] = history["epoch"].fillna(history["training_iteration"])
    return history


def read_result_lines(storage: rundir.TrialStorage, trial_id: str,
                      missing: list[str]) -> list[dict]:
    """Ray appends one JSON object per report; a killed trial can leave a torn last line."""
    text = storage.read_text(rundir.TUNE_DIR, trial_id, rundir.RESULT_FILE)
    rows, torn = rundir.parse_result_rows_counted(text)
    if torn:
        missing.append(f"{trial_id}/result.json: {torn} unreadable line(s) skipped")
    return rows


def summarise_trials(history, configs, dirs, status, missing, max_epochs=None) -> pd.DataFrame:
    ids = list(dict.fromkeys([*configs, *status]))
    rows = [summarise_trial(tid, history[history.trial_id == tid], configs.get(tid),
                            dirs.get(tid, ""), status.get(tid)) for tid in ids]
    trials = pd.DataFrame(rows)
    if trials.empty:
        return trials
    note_missing_metrics(trials, missing)
    if not status:
        infer_statuses(trials, missing, max_epochs)
    return trials.sort_values("best_val_dice", ascending=False, na_position="last",
                              ignore_index=True)


def summarise_trial(trial_id, rows: pd.DataFrame, config, trial_dir, status) -> dict:
    status = status if isinstance(status, dict) else {}
    config = config or status.get("config") or {}
    rows = rows.sort_values("epoch")
    row = {"trial_id": trial_id, "trial_dir": trial_dir,
           "number": status.get("number"),  # the order the searcher suggested it in
           "status": str(status.get("status", "unknown")), "reason": str(status.get("reason", "")),
           "epochs": int(rows["epoch"].max()) if rows["epoch"].notna().any()
           else int(status.get("epochs", 0) or 0)}
    for metric in METRICS:
        values = rows[metric].dropna()
        best = values.min() if metric.endswith("loss") else values.max()
        row[f"best_{metric}"] = best if len(values) else math.nan
        row[f"last_{metric}"] = values.iloc[-1] if len(values) else math.nan
    dice = rows["val_dice"]
    row["best_epoch"] = rows.loc[dice.idxmax(), "epoch"] if dice.notna().any() else math.nan
    # A trial of several seeds (search.seeds): each seed's val_dice at the best (mean) epoch.
    per_seed = [c for c in rows.columns if c.startswith(SEED_PREFIX) and rows[c].notna().any()]
    row["seed_scores"] = ([float(rows.loc[dice.idxmax(), c]) for c in per_seed]
                          if per_seed and dice.notna().any() else [])
    row["samples_per_s"] = rows["samples_per_s"].mean()
    row["gpu_peak_mem_mb"] = rows["gpu_peak_mem_mb"].max()  # CUDA only; NaN on CPU
    row["wall_s"] = rows["time_total_s"].max()
    # The Ray nodes it ran on, in order, short ids: "3f2a9c1e > 77b0d4aa" after a node loss.
    row["nodes"] = " > ".join(n[:8] for n in dict.fromkeys(rows[NODE_COLUMN].dropna()) if n)
    row.update({f"config/{k}": v for k, v in config.items() if is_scalar(v)})
    return row


def is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def note_missing_metrics(trials: pd.DataFrame, missing: list[str]) -> None:
    no_rows = trials["epochs"].eq(0) | (trials["best_val_dice"].isna()
                                        & trials["best_val_loss"].isna())
    if no_rows.any():
        kinds = trials[no_rows].status.value_counts()
        why = ", ".join(f"{n} {status}" for status, n in kinds.items())
        missing.append(f"{int(no_rows.sum())} of {len(trials)} trial(s) reported no metrics "
                       f"({why})")
    for metric in METRICS:
        gaps = trials[f"best_{metric}"].isna() & ~no_rows
        if gaps.any():
            missing.append(f"{metric} is missing in {int(gaps.sum())} trial(s) that reported "
                           "other metrics")


def infer_statuses(trials: pd.DataFrame, missing: list[str], max_epochs=None) -> None:
    """Without trial_status.json: trials that ran the full budget count as complete."""
    most = int(max_epochs) if isinstance(max_epochs, int) else int(trials["epochs"].max())
    def inferred(epochs: int) -> str:
        # What the epochs alone tell: a trial that trained all of them is complete (as
        # sweep/outcome.py's verdict says); pruned, failed and interrupted ones stop short.
        return rundir.COMPLETE if most > 0 and epochs >= most else UNKNOWN

    trials["status"] = [inferred(e) for e in trials["epochs"]]
    missing.append("trial_status.json is missing or unreadable: trials that ran all "
                   f"{most} epochs count as complete, the others as unknown")


def varying_config_keys(trials: pd.DataFrame) -> list[str]:
    keys = [c.removeprefix("config/") for c in trials if c.startswith("config/")]
    return [k for k in keys if trials[f"config/{k}"].astype(str).nunique() > 1]


def read_study(journal: Path, name: str, missing: list[str]):
    if not journal.exists():
        missing.append("study.journal is missing: no parameter importance")
        return None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-API warnings are not the user's business
            storage = JournalStorage(JournalFileBackend(str(journal)))
            names = optuna.get_all_study_names(storage)
            chosen = name if name in names else (names[0] if len(names) == 1 else None)
            if chosen is None:
                missing.append(f"study.journal holds no study named {name!r} (found {names})")
                return None
            return optuna.load_study(study_name=chosen, storage=storage)
    except Exception as error:  # a damaged journal must not stop the report
        missing.append(f"study.journal could not be read ({type(error).__name__}: {error})")
        return None
