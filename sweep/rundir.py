"""A sweep's run directory, ``runs/<name>/`` (docs/RUN_LAYOUT.md): every name in it, its readers
and writers, and the one vocabulary (and function) for how a trial ended.

Every other module takes its file names from here, so the layout is changed in one place.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from training.atomic import atomic_write, write_json, write_text

__all__ = ["atomic_write", "write_json", "write_text"]  # the one "write aside, then rename"

# ---- what a sweep optimises ---------------------------------------------------------------------
METRIC, MODE = "val_dice", "max"

# ---- names, relative to the run directory --------------------------------------------------------
EXPERIMENT_FILE = "experiment.yaml"  # the resolved experiment (after --key=value overrides)
TUNE_DIR = "tune"  # Ray Tune's experiment: tune/<trial_id>/{params.json,result.json,checkpoint_*}
STUDY_FILE = "study.journal"  # Optuna's journal storage
SPEED_PROBE_FILE = "speed_probe.json"  # the speed probe's table and the knobs every trial got
STATUS_FILE = "trial_status.json"  # {trial_id: {status, reason, epochs, config, best_val_dice}}
BEST_CHECKPOINT = "best.pth"
BEST_CONFIG = "best_config.yaml"
RETRAIN_DIR = "retrain"  # best_config.yaml's out_dir
INFEASIBLE_DIR = "infeasible"  # infeasible/<trial_id>.json: {"reason": ...}, from the trainable
CONFIRM_DIR, CONFIRM_FILE = "confirm", "confirm.json"
WANDB_DIR = "wandb"  # offline W&B runs
MIRROR_FILE = "wandb/mirror.json"  # the W&B mirror's own record
WANDB_SWEEP_FILE = "wandb_sweep.yaml"
REPORT_HTML, REPORT_MD, TRIALS_CSV = "report.html", "report.md", "trials.csv"
LOCK_FILE = "sweep.lock"  # flock'd by the live run/resume/confirm: "pid N (command) since T"
# Inside a trial's folder:
CHECKPOINT_FILE = "checkpoint.pth"  # the loop's own format, inside Ray's checkpoint_NNNNNN/
SEED_CHECKPOINT = "seed{seed}.pth"  # beside it in a several-seed trial: each seed's (to resume)
VAL_IMAGES_DIR = "val_images"  # W&B validation panels, epoch_NNN.png
PARAMS_FILE, RESULT_FILE = "params.json", "result.json"  # Ray's

# In the first result row of each run of a trial: the wall clock of its first training step.
FIRST_STEP_KEY = "first_step_at"

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


def verdict(last_result: dict | None, *, errored: bool, max_epochs: int,
            infeasible: str | None = None, error_text: str = "",
            budget: bool = False) -> tuple[str, str]:
    """(status, reason) of a trial that ended. ``infeasible`` is the reason the trainable
    recorded (``infeasible_reason``); an error whose text says out-of-memory counts too."""
    if infeasible:
        return INFEASIBLE, infeasible
    if errored:
        if is_out_of_memory(error_text):
            return INFEASIBLE, error_text
        return FAILED, error_text or "error (see the trial's error.txt)"
    epochs = int((last_result or {}).get("epoch") or 0)
    if epochs >= max_epochs:
        return COMPLETE, f"trained all {max_epochs} epochs"
    by = "ASHA or the time budget" if budget else "ASHA"
    return PRUNED, f"stopped by {by} after epoch {epochs} of {max_epochs}"


def error_line(trial) -> str:
    """The last line of a Tune trial's traceback, e.g. 'error: ValueError: ...': the reason
    trial_status.json and the W&B run record for a failed trial."""
    text = ""
    try:
        # The driver's local error.txt first: when on_trial_error runs, get_error() (which
        # reads the storage copy) can still come back empty.
        if trial.error_file:
            with open(trial.error_file, errors="replace") as file:
                text = file.read()
        text = text or str(trial.get_error() or "")
    except Exception:  # noqa: BLE001 - the reason is a nicety; never fail the sweep for it
        pass
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"error: {lines[-1][:300]}" if lines else "error (see the trial's error.txt)"


# How running out of memory reads, wherever it happened: torch on CUDA ("CUDA out of memory",
# torch.OutOfMemoryError) and on CPU (a plain RuntimeError: "DefaultCPUAllocator: can't
# allocate memory" or "... not enough memory"), cuBLAS/cuDNN's workspaces, Python and numpy
# (MemoryError, "Unable to allocate"), Ray's memory monitor killing a worker.
OUT_OF_MEMORY_TEXT = ("out of memory", "outofmemoryerror", "can't allocate memory",
                      "cannot allocate memory", "not enough memory", "memoryerror",
                      "unable to allocate", "status_alloc_failed", "running low on memory")


def is_out_of_memory(text: str) -> bool:
    text = text.lower()
    return any(pattern in text for pattern in OUT_OF_MEMORY_TEXT)


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


# ---- infeasible/<trial_id>.json: how a trial tells the driver it ran out of memory ---------------
def record_infeasible(run_dir: str | Path, trial_id: str, reason: str) -> None:
    write_json(Path(run_dir) / INFEASIBLE_DIR / f"{trial_id}.json", {"reason": reason})


def infeasible_reason(run_dir: str | Path, trial_id: str) -> str | None:
    """Why the trial was infeasible, or None if it was not."""
    path = Path(run_dir) / INFEASIBLE_DIR / f"{trial_id}.json"
    try:
        return json.loads(path.read_text())["reason"]
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None


# ---- tune/<trial_id>/: Ray's per-trial results, the ground truth of what trained --------------
@dataclass
class TrialRecord:
    """One trial folder under tune/ (or confirm/): its params and its result rows."""
    trial_id: str
    path: Path
    params: dict
    rows: list[dict]

    def best_row(self) -> dict | None:
        """The best epoch whose checkpoint Ray kept (it keeps the best and the latest)."""
        kept = [r for r in self.rows if METRIC in r and r.get("checkpoint_dir_name")
                and (self.path / r["checkpoint_dir_name"] / CHECKPOINT_FILE).exists()]
        return max(kept, key=lambda r: r[METRIC], default=None)

    def best_value(self) -> float | None:
        values = [r[METRIC] for r in self.rows if METRIC in r]
        return max(values) if values else None


def read_trials(tune_dir: str | Path) -> list[TrialRecord]:
    """Every trial folder with a params.json; result lines a killed driver tore are skipped."""
    records = []
    for folder in sorted(p for p in Path(tune_dir).iterdir() if (p / PARAMS_FILE).exists()):
        params = json.loads((folder / PARAMS_FILE).read_text())
        records.append(TrialRecord(folder.name, folder, params, read_result_rows(folder)))
    return records


def read_result_rows(trial_dir: Path) -> list[dict]:
    rows = []
    path = Path(trial_dir) / RESULT_FILE
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a killed driver
            if isinstance(row, dict):
                rows.append(row)
    return rows
