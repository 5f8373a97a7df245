"""A sweep's run directory, ``runs/<name>/`` (docs/RUN_LAYOUT.md): every name in it, its readers
and writers, and the one vocabulary for how a trial ended (sweep/outcome.py decides which).

Every other module takes its file names from here, so the layout is changed in one place.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import math
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from sweep.failures import is_transient_storage_error, ride_out
from training.atomic import atomic_write, write_json, write_text
from training.errors import error_line

__all__ = ["atomic_write", "write_json", "write_text"]  # the one "write aside, then rename"

log = logging.getLogger(__name__)

# ---- what a sweep optimises ---------------------------------------------------------------------
METRIC, MODE = "val_dice", "max"

# ---- names, relative to the run directory --------------------------------------------------------
# The driver's files always live in runs/<name>/; Ray's trial folders (tune/, confirm/) and the
# trials' infeasible/ records live in the experiment's `storage` (the run directory by default):
# see TrialStorage below.
EXPERIMENT_FILE = "experiment.yaml"  # the resolved experiment (after --key=value overrides)
TUNE_DIR = "tune"  # Ray Tune's experiment: tune/<trial_id>/{params.json,result.json,checkpoint_*}
# Ray's own state in tune/ (and confirm/), one file per snapshot, the time in the name.
EXPERIMENT_STATE, SEARCHER_STATE = "experiment_state-*.json", "searcher-state-*.pkl"
SEARCH_GEN_STATE = "search_gen_state-*.json"  # Ray's trial count (a cloudpickle, despite .json)
STUDY_FILE = "study.journal"  # Optuna's journal storage
EXPERIMENT_FINGERPRINT_FILE = "experiment_fingerprint.json"  # the experiment the sweep began
DATA_FINGERPRINT_FILE = "data_fingerprint.json"  # the data set it began on (sweep/fingerprint.py)
EXTENSIONS_FILE = "extensions.json"  # each `extend`: [{from_trials, to_trials, at}, ...]
WARM_START_FILE = "warm_start.json"  # search.warm_start: the sources and what each told
SPEED_PROBE_FILE = "speed_probe.json"  # the speed probe's table and the knobs every trial got
STATUS_FILE = "trial_status.json"  # {trial_id: {status, reason, epochs, config, best_val_dice}}
BEST_CHECKPOINT = "best.pth"
BEST_CONFIG = "best_config.yaml"
RETRAIN_DIR = "retrain"  # best_config.yaml's out_dir
INFEASIBLE_DIR = "infeasible"  # infeasible/<trial_id>.json: {"reason": ...}, from the trainable
CONFIRM_DIR, CONFIRM_FILE = "confirm", "confirm.json"
WANDB_DIR = "wandb"  # W&B's runs (wandb.init(dir=<run dir>) puts them in wandb/)
MIRROR_FILE = "wandb/mirror.json"  # the W&B mirror's own record
DATASET_FILE = "wandb/dataset.json"  # the data set artifact's file
ARTIFACT_STAGING_DIR = "wandb/data"  # W&B's artifact staging, so `wandb-sync` finds it here
WANDB_SWEEP_FILE = "wandb_sweep.yaml"  # the experiment as a W&B sweep config
REPORT_HTML, REPORT_MD, TRIALS_CSV = "report.html", "report.md", "trials.csv"
PARETO_CSV = "pareto.csv"  # several search.objectives: the front's trials (sweep/front.py)
LOCK_FILE = "sweep.lock"  # flock'd by the live run/resume/confirm: "pid N (command) since T"
# Inside a trial's folder:
CHECKPOINT_DIRS = "checkpoint_*"  # Ray's checkpoint_NNNNNN/ folders
CHECKPOINT_FILE = "checkpoint.pth"  # the loop's own format, inside Ray's checkpoint_NNNNNN/
SEED_CHECKPOINT = "seed{seed}.pth"  # beside it in a several-seed trial: each seed's (to resume)
VAL_IMAGES_DIR = "val_images"  # W&B validation panels, epoch_NNN.png
PARAMS_FILE, RESULT_FILE = "params.json", "result.json"  # Ray's
ERROR_FILE = "error.txt"  # Ray's, in a trial that raised: its traceback, the exception last

# In the first result row of each run of a trial: the wall clock of its first training step.
FIRST_STEP_KEY = "first_step_at"
# In every result row: the wall clock when the trial reported the epoch, as a float (Ray's own
# `timestamp` is whole seconds, too coarse to tell which epochs of trials sharing a GPU overlap).
REPORTED_AT_KEY = "reported_at"

# ---- how a trial ended: one vocabulary everywhere (status file, Optuna, W&B, report) -------------
COMPLETE = "complete"  # trained every epoch
PRUNED = "pruned"  # stopped early by ASHA (or the time budget)
INFEASIBLE = "infeasible"  # ran out of memory: the same config would again
FAILED = "failed"  # an error after all retries, or lost with a killed driver
RUNNING = "running"  # not ended; after a sweep: interrupted, `resume` continues it
STATUSES = (COMPLETE, PRUNED, INFEASIBLE, FAILED, RUNNING)
FINISHED = (COMPLETE, PRUNED, INFEASIBLE)  # ended for good: a resume never reruns these
ENDED = (*FINISHED, FAILED)
SCORED = (COMPLETE, PRUNED)  # trials whose metrics can make the best model


# ---- trial_status.json ---------------------------------------------------------------------------
def read_statuses(run_dir: str | Path) -> dict:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def write_statuses(run_dir: str | Path, statuses: dict) -> None:
    write_json(Path(run_dir) / STATUS_FILE, statuses)  # readers never see half a file


def tally(statuses: dict) -> dict:
    counts = {status: 0 for status in STATUSES}
    for entry in statuses.values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    return counts


def best_so_far(statuses: dict) -> tuple[float, str]:
    """(best val_dice, trial id) over the recorded trials; (-inf, '') when none scored."""
    return max(((entry.get("best_" + METRIC, -math.inf), trial_id)
                for trial_id, entry in statuses.items()), default=(-math.inf, ""))


# ---- study.journal: the Optuna study -----------------------------------------------------------
# Optuna's journal lock: a symlink it makes beside the journal while it appends (optuna.storages
# .journal: JournalFileSymlinkLock, the file's name + ".lock").
STUDY_LOCK_FILE = STUDY_FILE + ".lock"


def clear_stale_study_lock(run_dir: str | Path) -> bool:
    """Remove a journal lock a killed driver left (True if there was one). Only for a process
    holding the run directory (sweep/runlock.py): no other process appends to the journal then,
    so any lock found is stale. Why it matters: Optuna breaks a stale lock only after a grace
    period, and never when the symlink's target is gone (a moved run dir: its ``os.stat``
    fails and it retries at once, forever, at full CPU)."""
    lock = Path(run_dir) / STUDY_LOCK_FILE
    if not (lock.is_symlink() or lock.exists()):
        return False
    lock.unlink(missing_ok=True)
    return True


def journal_storage(run_dir: str | Path):
    """The study's Optuna storage: a journal file under the run directory."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(Path(run_dir).resolve() / STUDY_FILE)))


# ---- infeasible/<trial_id>.json: how a trial tells the driver it ran out of memory ---------------
# In the trial storage, beside tune/: a trial on another node can write there, and the driver
# (and a resumed driver) reads it back from there.
def record_infeasible(storage: TrialStorage, trial_id: str, reason: str) -> None:
    ride_out(lambda: storage.write_bytes(json.dumps({"reason": reason}).encode(),
                                         INFEASIBLE_DIR, f"{trial_id}.json"),
             f"trial {trial_id}: recording it infeasible")


def infeasible_reason(storage: TrialStorage, trial_id: str) -> str | None:
    """Why the trial was infeasible, or None if it was not. Never raises for a storage that
    stays unreachable: the driver's Tune callbacks and searcher ask this as a trial ends, and an
    exception there makes Tune retry the finished trial (see ride_out)."""
    try:
        data = ride_out(lambda: storage.read_bytes(INFEASIBLE_DIR, f"{trial_id}.json"),
                        f"trial {trial_id}: reading its infeasible/ record")
        return json.loads(data)["reason"]
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None
    except OSError as error:
        if not is_transient_storage_error(error):
            raise
        log.warning("trial %s: infeasible/ record unreadable, storage still unreachable (%s)",
                    trial_id, error_line(error))
        return None


# ---- the trial storage: where Ray writes trial folders ------------------------------------------
class TrialStorage:
    """Where Ray keeps a sweep's trial folders (``tune/``, ``confirm/``) and ``infeasible/``:
    the run directory itself (the experiment's ``storage`` left empty), ``<storage>/<name>/`` on
    a local or shared filesystem (NFS), or ``<uri>/<name>/`` for a URI pyarrow opens
    (``s3://bucket/prefix``, ``gs://bucket/prefix``). A URI's credentials (and an endpoint, e.g.
    ``AWS_ENDPOINT_URL``) come from the environment of each process, never from a file: the
    filesystem is built from the URI alone, so nothing secret is pickled into Ray's state.

    Every reader of trial results (resume, confirm, report, best.pth) goes through this."""

    def __init__(self, run_dir: str | Path, storage: str = "", name: str | None = None):
        import pyarrow.fs

        self.run_dir, self.uri = Path(run_dir).resolve(), storage
        name = name or self.run_dir.name
        if not storage:
            self.fs, self.root = pyarrow.fs.LocalFileSystem(), str(self.run_dir)
        elif is_uri(storage):
            self.fs, base = pyarrow.fs.FileSystem.from_uri(storage)
            self.root = posixpath.join(base.rstrip("/"), name)
        else:
            self.fs = pyarrow.fs.LocalFileSystem()
            self.root = str(Path(storage).expanduser().resolve() / name)

    @property
    def is_local(self) -> bool:
        return not is_uri(self.uri)

    def path(self, *parts: str) -> str:
        """A path inside ``self.fs`` (no scheme): what Ray's storage_filesystem expects."""
        return posixpath.join(self.root, *parts)

    def where(self, *parts: str) -> str:
        """The same place as a user reads it: a local path or the URI."""
        if self.is_local:
            return self.path(*parts)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://" + self.path(*parts)

    def ray_storage(self) -> dict:
        """RunConfig's storage_path and storage_filesystem (None: Ray's own local handling)."""
        if self.is_local:
            return {"storage_path": self.root, "storage_filesystem": None}
        return {"storage_path": self.root, "storage_filesystem": self.fs}

    def exists(self, *parts: str) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.path(*parts)).type != pyarrow.fs.FileType.NotFound

    def is_dir(self, *parts: str) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.path(*parts)).type == pyarrow.fs.FileType.Directory

    def listdir(self, *parts: str) -> list[str]:
        """Names directly under a folder, sorted; [] when it does not exist."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.path(*parts), allow_not_found=True)
        return sorted(posixpath.basename(info.path) for info in self.fs.get_file_info(selector))

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode(errors="replace")

    def write_bytes(self, data: bytes, *parts: str) -> None:
        if self.is_local:  # readers never see half a file
            write_json_bytes(Path(self.path(*parts)), data)
            return
        # Object stores have no folders to make (pyarrow would add empty "dir/" markers).
        with self.fs.open_output_stream(self.path(*parts)) as stream:  # one atomic PUT
            stream.write(data)

    def download(self, source_parts: tuple[str, ...], target: Path) -> None:
        """Copy one file out of the storage (e.g. the best checkpoint into best.pth)."""
        import pyarrow.fs

        def copy(temporary: Path) -> None:
            pyarrow.fs.copy_files(self.path(*source_parts), str(temporary),
                                  source_filesystem=self.fs,
                                  destination_filesystem=pyarrow.fs.LocalFileSystem())

        atomic_write(target, copy)

    def put_file(self, source: Path, *parts: str) -> None:
        """Copy a local file into the storage, wherever it is (a run directory, a shared path,
        a bucket): what a trial on any node writes for the driver to read."""
        if self.is_local:
            atomic_write(Path(self.path(*parts)),
                         lambda temporary: shutil.copyfile(source, temporary))
        else:
            self.write_bytes(Path(source).read_bytes(), *parts)

    def upload(self, source: Path, *parts: str) -> None:
        """Copy a local file into the storage (a no-op where the storage is local)."""
        if not self.is_local:
            self.write_bytes(Path(source).read_bytes(), *parts)

    def delete(self, *parts: str) -> None:
        if self.is_dir(*parts):
            self.fs.delete_dir(self.path(*parts))

    def __reduce__(self):  # rebuilt from the URI alone in each process (env credentials)
        return (TrialStorage, (str(self.run_dir), self.uri, posixpath.basename(self.root)))

    def __repr__(self) -> str:
        return f"TrialStorage({self.where()!r})"


def is_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


def write_json_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def storage_of(run_dir: str | Path) -> TrialStorage:
    """The trial storage a run directory's experiment.yaml names (the run dir itself if none)."""
    import yaml

    try:
        values = yaml.safe_load((Path(run_dir) / EXPERIMENT_FILE).read_text()) or {}
    except (FileNotFoundError, yaml.YAMLError):
        values = {}
    values = values if isinstance(values, dict) else {}
    return TrialStorage(run_dir, str(values.get("storage") or ""),
                        str(values.get("name") or Path(run_dir).resolve().name))


# ---- tune/<trial_id>/: Ray's per-trial results, the ground truth of what trained --------------
@dataclass
class TrialRecord:
    """One trial folder under tune/ (or confirm/): its params and its result rows."""
    trial_id: str
    storage: TrialStorage
    folder: str  # TUNE_DIR or CONFIRM_DIR
    params: dict
    rows: list[dict]
    checkpoints: frozenset[str] = frozenset()  # checkpoint_NNNNNN folders holding our file

    def best_row(self) -> dict | None:
        """The best epoch whose checkpoint Ray kept (it keeps the best and the latest)."""
        kept = [r for r in self.rows if METRIC in r
                and r.get("checkpoint_dir_name") in self.checkpoints]
        return max(kept, key=lambda r: r[METRIC], default=None)

    def best_value(self) -> float | None:
        values = [r[METRIC] for r in self.rows if METRIC in r]
        return max(values) if values else None

    def read_text(self, name: str) -> str:
        """A file of the trial's folder, e.g. Ray's error.txt."""
        return self.storage.read_text(self.folder, self.trial_id, name)

    def error_text(self) -> str:
        """Ray's error.txt (the traceback, the exception last); '' when there is none."""
        try:
            return self.read_text(ERROR_FILE)
        except OSError:
            return ""

    def has(self, name: str) -> bool:
        return self.storage.exists(self.folder, self.trial_id, name)

    @property
    def path(self) -> Path:
        """The trial's folder on this machine (a local or shared-filesystem storage only)."""
        if not self.storage.is_local:
            raise ValueError(f"{self.storage.where(self.folder, self.trial_id)} is not a local "
                             f"folder: read it through the storage")
        return Path(self.storage.path(self.folder, self.trial_id))

    def checkpoint_parts(self, row: dict) -> tuple[str, ...]:
        return (self.folder, self.trial_id, row["checkpoint_dir_name"], CHECKPOINT_FILE)

    def nodes(self) -> list[str]:
        """The Ray nodes the trial ran on, in order (a node lost mid-trial: two of them)."""
        return list(dict.fromkeys(r[NODE_KEY] for r in self.rows if r.get(NODE_KEY)))


NODE_KEY = "node_id"  # the trainable adds the Ray node id of each epoch to its result row
NOTICE_KEY = "notice"  # a line a trial sends the driver with its first result (trainable.py)


def read_trials(storage: TrialStorage, folder: str = TUNE_DIR) -> list[TrialRecord]:
    """Every trial folder with a params.json; result lines a killed driver tore are skipped."""
    records = [read_trial(storage, trial_id, folder) for trial_id in storage.listdir(folder)]
    return [record for record in records if record]


def read_trial(storage: TrialStorage, trial_id: str, folder: str = TUNE_DIR) -> TrialRecord | None:
    """One trial folder, or None without a params.json."""
    if not storage.exists(folder, trial_id, PARAMS_FILE):
        return None
    params = json.loads(storage.read_text(folder, trial_id, PARAMS_FILE))
    kept = frozenset(name for name in storage.listdir(folder, trial_id)
                     if fnmatch.fnmatch(name, CHECKPOINT_DIRS)
                     and storage.exists(folder, trial_id, name, CHECKPOINT_FILE))
    return TrialRecord(trial_id, storage, folder, params,
                       read_result_rows(storage, folder, trial_id), kept)


def prune_checkpoints(storage: TrialStorage, trial_id: str, folder: str = TUNE_DIR) -> None:
    """Keep an ended trial's best checkpoint and its latest; delete the others (a URI storage
    keeps every checkpoint while the trial runs: sweep/search.py checkpoint_config). Rides out
    a short outage of the storage; raises if it stays unreachable (nothing is lost then: the
    extra checkpoints stay until a later call)."""
    def prune() -> None:
        record = read_trial(storage, trial_id, folder)
        if record is None or len(record.checkpoints) <= 2:
            return
        best = record.best_row()
        keep = {max(record.checkpoints), best["checkpoint_dir_name"] if best else ""}
        for name in record.checkpoints - keep:
            storage.delete(folder, trial_id, name)

    ride_out(prune, f"trial {trial_id}: pruning its checkpoints")


def read_result_rows(storage: TrialStorage, *trial_parts: str) -> list[dict]:
    """A trial folder's result.json rows, from the trial storage (``trial_parts``: e.g.
    TUNE_DIR, trial_id)."""
    if not storage.exists(*trial_parts, RESULT_FILE):
        return []
    return parse_result_rows(storage.read_text(*trial_parts, RESULT_FILE))


def read_result_rows_at(trial_path: str | Path, filesystem=None) -> list[dict]:
    """The same, from a trial folder Ray names: ``trial.path`` in ``trial.storage``'s
    ``storage_filesystem`` (None: a local path, e.g. a run directory's tune/<trial_id>)."""
    import pyarrow.fs

    filesystem = filesystem or pyarrow.fs.LocalFileSystem()
    path = posixpath.join(str(trial_path), RESULT_FILE)
    try:
        with filesystem.open_input_stream(path) as stream:
            text = stream.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return []
    return parse_result_rows(text)


def parse_result_rows(text: str) -> list[dict]:
    return parse_result_rows_counted(text)[0]


def parse_result_rows_counted(text: str) -> tuple[list[dict], int]:
    """Ray's result.json rows, and how many lines could not be read (a line torn by a killed
    trial or driver); blank lines are neither."""
    rows, torn = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, torn
