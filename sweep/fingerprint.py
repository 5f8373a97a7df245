"""What a run directory's sweep started from, so that `resume` continues that sweep and no other,
and whether a run directory already holds a sweep at all.

`run` records two files as its trials start (sweep/rundir.py names them): the resolved
experiment and the data set's fingerprint (for a folder, every image and mask file's size and
sha256; for the synthetic set, its generator settings and code). `resume` compares both before
Ray starts and refuses a change in one line. Why refuse rather than apply: a resume restores
Ray's and Optuna's pickled state, so an edited experiment.yaml takes effect in part (the trials
still to come get the new width, the space and trial count stay), and changed data is scored
beside the old. `changed_keys` is the comparison on its own, for `extend` (issue 25) to allow
the keys a sweep can honour.
"""
from __future__ import annotations

import json
from pathlib import Path

from data_pipeline.cache import data_spec, synthetic_plan
from data_pipeline.digests import folder_digests
from sweep.experiment import Experiment
from sweep.rundir import (
    DATA_FINGERPRINT_FILE,
    EXPERIMENT_FILE,
    EXPERIMENT_FINGERPRINT_FILE,
    STATUS_FILE,
    STUDY_FILE,
    TUNE_DIR,
    TrialStorage,
    storage_of,
    write_json,
)
from training.config import TrainConfig
from training.errors import error_line
from training.settings import ConfigError

MISSING = object()
SHOWN = 3  # names and values quoted in a one-line message; the rest are counted
START_OVER = "start over with `python -m sweep run EXPERIMENT.yaml --fresh`"


# ---- is there a sweep here already? -------------------------------------------------------------
def sweep_already_in(run_dir: Path, storage: TrialStorage) -> str | None:
    """Where a sweep already in ``run_dir`` shows (None: there is none): trial folders in the
    storage about to be used or in the one experiment.yaml recorded, or the study and status
    files the driver keeps in the run directory whatever the storage."""
    if storage.exists(TUNE_DIR):
        return storage.where(TUNE_DIR)
    recorded = recorded_storage(run_dir)
    try:
        if recorded is not None and recorded.exists(TUNE_DIR):
            return recorded.where(TUNE_DIR)
    except OSError:  # unreachable now: the run directory's own files below still tell
        pass
    for name in (STUDY_FILE, STATUS_FILE, EXPERIMENT_FINGERPRINT_FILE):
        if (run_dir / name).exists():
            return str(run_dir / name)
    return None


def recorded_storage(run_dir: Path) -> TrialStorage | None:
    """The trial storage the run directory's experiment.yaml names; None when there is no such
    file, or its storage cannot be opened (the study file still shows the sweep)."""
    if not (run_dir / EXPERIMENT_FILE).is_file():
        return None
    try:
        return storage_of(run_dir)
    except (OSError, ValueError):
        return None


# ---- the experiment -------------------------------------------------------------------------
def experiment_values(experiment: Experiment) -> dict:
    """The resolved experiment as JSON holds it (tuples as lists), for comparing with a record."""
    return json.loads(json.dumps(experiment.to_dict()))


def changed_keys(saved: dict, now: dict) -> list[str]:
    """The settings that differ between two resolved experiments (``Experiment.to_dict()``), as
    dotted keys in the order ``now`` has them, then those only ``saved`` has (a record on disk
    may be sorted): a section's keys one by one ('train.width', 'space.lr', 'search.trials'), a
    top-level value ('name', 'storage') as itself. The type counts as YAML keeps it (0 and 0.0
    differ, as 1 and true do)."""
    keys = []
    for section in ordered_union(now, saved):
        old, new = saved.get(section, MISSING), now.get(section, MISSING)
        if isinstance(old, dict) and isinstance(new, dict):
            keys += [f"{section}.{key}" for key in ordered_union(new, old)
                     if not same(old.get(key, MISSING), new.get(key, MISSING))]
        elif not same(old, new):
            keys.append(section)
    return keys


def ordered_union(first: dict, second: dict) -> list:
    return list(dict.fromkeys([*first, *second]))


def same(old, new) -> bool:
    if old is MISSING or new is MISSING:
        return old is new
    return json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)


def experiment_change(run_dir: Path, saved: dict, now: dict) -> str | None:
    """The one-line refusal for an edited experiment.yaml, or None when it is as it started."""
    keys = changed_keys(saved, now)
    if not keys:
        return None
    flat_saved, flat_now = flatten(saved), flatten(now)
    values = "; ".join(f"{key}: {short(flat_saved.get(key, MISSING))} -> "
                       f"{short(flat_now.get(key, MISSING))}" for key in keys[:SHOWN])
    more = f"; and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return (f"{run_dir / EXPERIMENT_FILE} was edited since the sweep started: "
            f"{', '.join(keys)} changed ({values}{more}); a resume continues the sweep as it "
            f"began: put those values back, or {START_OVER}")


def flatten(values: dict) -> dict:
    return {f"{section}.{key}": value for section, entries in values.items()
            if isinstance(entries, dict) for key, value in entries.items()} | values


def short(value) -> str:
    text = "(none)" if value is MISSING else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- the data set ------------------------------------------------------------------------------
def data_fingerprint(train: TrainConfig) -> dict:
    """What the data set is: a folder's files by content, or the synthetic set's settings and
    its generator's code (the synthetic cache's own content id)."""
    spec = data_spec(train.data_dir, train.scale, train.mask_suffix, train.synthetic_images,
                     train.synthetic_size, train.synthetic_seed)
    if spec["kind"] == "synthetic":
        return {"kind": "synthetic", "settings": spec,
                "generator": synthetic_plan(spec).fingerprint}
    try:
        files = folder_digests(spec["path"])
    except OSError as error:
        raise ConfigError(f"data folder {spec['path']}: cannot read it to check what the "
                          f"sweep trains on ({error_line(error, 200)})") from None
    return {"kind": "folder", "path": spec["path"], "files": files}


def data_change(saved: dict, now: dict) -> str | None:
    """The one-line refusal for a data set that changed since the sweep started, or None."""
    if saved == now:
        return None
    if saved.get("kind") == now.get("kind") == "folder" and saved["path"] == now["path"]:
        old, new = saved["files"], now["files"]
        differ = [name for name in old if name in new and old[name] != new[name]]
        added = [name for name in new if name not in old]
        removed = [name for name in old if name not in new]
        names = [*differ, *added, *removed]
        listed = ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")
        return (f"data folder {now['path']} changed since the sweep started: "
                f"{len(differ)} file(s) differ, {len(added)} added, {len(removed)} removed "
                f"({listed}); a resume would score trials on old and new data together: put "
                f"the original files back, or {START_OVER}")
    if saved.get("kind") == now.get("kind") == "synthetic" \
            and saved.get("settings") == now.get("settings"):
        return ("the synthetic data set changed since the sweep started (its generator, "
                "data_pipeline/synthetic.py, is not the one it began with): resume it with "
                f"that version, or {START_OVER}")
    return (f"the data set changed since the sweep started ({describe(saved)} then, "
            f"{describe(now)} now): {START_OVER}")


def describe(fingerprint: dict) -> str:
    if fingerprint.get("kind") == "folder":
        return f"folder {fingerprint.get('path')}"
    return f"synthetic {json.dumps(fingerprint.get('settings'), sort_keys=True)}"


# ---- the records in the run directory --------------------------------------------------------
def record_start(run_dir: Path, experiment: Experiment, missing_only: bool = False) -> None:
    """Write both records (``missing_only``: those an older run directory lacks)."""
    if not (missing_only and (run_dir / EXPERIMENT_FINGERPRINT_FILE).is_file()):
        write_json(run_dir / EXPERIMENT_FINGERPRINT_FILE, experiment_values(experiment))
    if not (missing_only and (run_dir / DATA_FINGERPRINT_FILE).is_file()):
        write_json(run_dir / DATA_FINGERPRINT_FILE, data_fingerprint(experiment.train))


def check_same_start(run_dir: Path, experiment: Experiment) -> bool:
    """Refuse in one line (ConfigError) an experiment or data set that changed since the sweep
    started; reads only. False when a record is missing (a run directory from before the
    records existed): the caller records it once the resume is sure to go ahead."""
    saved = read_record(run_dir / EXPERIMENT_FINGERPRINT_FILE)
    if saved is not None and (change := experiment_change(run_dir, saved,
                                                          experiment_values(experiment))):
        raise ConfigError(change)
    saved_data = read_record(run_dir / DATA_FINGERPRINT_FILE)
    if saved_data is not None and (change := data_change(saved_data,
                                                         data_fingerprint(experiment.train))):
        raise ConfigError(change)
    return saved is not None and saved_data is not None


def read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # torn or unreadable: not to be guessed around
        raise ConfigError(f"{path}: unreadable ({error_line(error, 120)}); it records what "
                          f"the sweep started from, so the resume stops here: nothing was "
                          f"changed") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: not a record of what the sweep started from (a JSON "
                          f"object expected); nothing was changed")
    return record
