"""Before a resume: check what the interrupted sweep left on disk. What can be rebuilt from Ray's
per-trial results (the ground truth of what trained) is rebuilt and said; what cannot is refused
with one line naming the damaged file, before Ray starts. Never a resume that silently reruns
finished trials or drops some.

- ``tune/<trial>/result.json`` with torn or non-UTF-8 lines: those lines are dropped (the epochs
  they held are named); every other row stays.
- ``trial_status.json`` missing, unreadable or missing trials: rebuilt per trial from its result
  rows and ``verdict()``, with Ray's own record of which trials were still going.
- ``study.journal`` torn in its last record (a kill mid-write): that record is cut off.
- Refused: Ray's experiment state or searcher state missing or unreadable (Ray would start the
  sweep over), a journal missing or damaged before its end, or one that lacks whole records
  Ray's searcher state refers to (cut short, not torn by a kill): TPE's history and the
  searcher would no longer agree, and the resumed searcher would fail on the first trial
  the study has lost.
"""
from __future__ import annotations

import fnmatch
import io
import json
import logging
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sweep.failures import failure_reason
from sweep.outcome import verdict
from sweep.rundir import (
    ENDED,
    ERROR_FILE,
    EXPERIMENT_STATE,
    FAILED,
    RESULT_FILE,
    RUNNING,
    SEARCH_GEN_STATE,
    SEARCHER_STATE,
    STATUS_FILE,
    STUDY_FILE,
    TUNE_DIR,
    TrialStorage,
    infeasible_reason,
    journal_storage,
    read_trials,
    write_statuses,
    write_text,
)
from training.settings import ConfigError

log = logging.getLogger(__name__)

RAY_UNFINISHED = ("RUNNING", "PENDING", "PAUSED")


class DamagedRun(ConfigError):
    """A run directory a resume cannot continue without losing trials; one line."""


def check_before_resume(run_dir: Path, max_epochs: int, study_name: str = "",
                        storage: TrialStorage | None = None) -> list[str]:
    """Repair what Ray's results can rebuild; returns one line per repair (empty: all sound).
    ``storage``: where tune/ is (default: the run directory)."""
    run_dir = Path(run_dir)
    storage = storage or TrialStorage(run_dir)
    ray_status = ray_trial_statuses(storage)  # first: refuse before touching anything
    check_searcher_state(storage)
    notes = repair_journal(run_dir, storage)
    notes += repair_result_files(storage)
    # Ray's snapshot may predate a trial's end; the study was told at once (status, reason).
    told = study_verdicts(run_dir, study_name) if study_name else {}
    notes += rebuild_statuses(run_dir, ray_status, max_epochs, told, storage)
    return notes


def newest(storage: TrialStorage, pattern: str) -> str | None:
    """The last name in tune/ matching ``pattern`` (Ray's state files sort by time)."""
    names = fnmatch.filter(storage.listdir(TUNE_DIR), pattern)
    return names[-1] if names else None


def study_verdicts(run_dir: Path, study_name: str) -> dict[str, tuple[str, str]]:
    """{ray trial id: (status, reason)} of the trials the searcher told the study about."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=journal_storage(run_dir))
    except Exception as error:  # noqa: BLE001 - optuna's errors vary; the journal parsed above
        raise DamagedRun(f"{run_dir / STUDY_FILE}: the Optuna study cannot be read "
                         f"({type(error).__name__}); nothing was changed") from None
    return {t.user_attrs["ray_trial_id"]: (t.user_attrs["status"], t.user_attrs.get("reason", ""))
            for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("ray_trial_id") and t.user_attrs.get("status") in ENDED}


# ---- Ray's experiment state ------------------------------------------------------------------
def ray_trial_statuses(storage: TrialStorage) -> dict[str, str]:
    """{trial_id: Ray's status} from the newest experiment state; DamagedRun if unreadable
    (Ray itself would log the error and silently start the whole sweep again)."""
    name = newest(storage, EXPERIMENT_STATE)
    if name is None:
        raise DamagedRun(f"{storage.where(TUNE_DIR)}: Ray's experiment state ({EXPERIMENT_STATE}) "
                         f"is missing, so a resume would rerun every trial; nothing was changed")
    try:
        state = json.loads(storage.read_bytes(TUNE_DIR, name).decode("utf-8"))
        statuses = {}
        for trial_state, _ in state["trial_data"]:
            trial = json.loads(trial_state) if isinstance(trial_state, str) else trial_state
            statuses[trial["trial_id"]] = trial["status"]
        state["runner_data"]  # noqa: B018 - Ray's resume reads it first
    except (ValueError, KeyError, TypeError) as error:
        raise DamagedRun(f"{storage.where(TUNE_DIR, name)}: Ray's experiment state is damaged "
                         f"({type(error).__name__}), so a resume would rerun every trial; "
                         f"nothing was changed") from None
    return statuses


def check_searcher_state(storage: TrialStorage) -> None:
    name = newest(storage, SEARCHER_STATE)
    # A pickle ends with its STOP opcode "."; a torn or emptied file does not.
    if name is None or not storage.read_bytes(TUNE_DIR, name).endswith(b"."):
        what = storage.where(TUNE_DIR, name or SEARCHER_STATE)
        raise DamagedRun(f"{what}: the searcher's state is missing or torn, so Ray would start "
                         f"the sweep over; nothing was changed")
    # Ray's trial count beside it (a pickle too): written atomically in Ray's staging folder but
    # copied into tune/ without a rename, so a kill mid-copy tears it, and Ray then logs "Failed
    # to restore the run state" and starts the sweep over, rerunning finished trials.
    generator = newest(storage, SEARCH_GEN_STATE)
    if generator is not None and not storage.read_bytes(TUNE_DIR, generator).endswith(b"."):
        raise DamagedRun(f"{storage.where(TUNE_DIR, generator)}: Ray's search generator state "
                         f"is torn (a kill while Ray copied it), so Ray would start the sweep "
                         f"over; nothing was changed")


# ---- what Ray's searcher state knows of the study --------------------------------------------
@dataclass
class SearcherFacts:
    """What the saved OptunaSearch (SweepSearch) will expect of the study once restored: each
    trial's number by Ray trial id, the trials it told, the last epoch it reported of each."""
    study_name: str = ""
    numbers: dict[str, int] = field(default_factory=dict)
    told: set[str] = field(default_factory=set)
    reported: dict[str, int] = field(default_factory=dict)


class Opaque:
    """Whatever the searcher state pickles beyond plain data (optuna, numpy, ray and sweep
    objects): kept as the state it was pickled with, nothing imported and nothing run. So the
    check neither opens the pickled JournalStorage (which would read the journal, at the path
    of the run it was made in) nor trusts the file's code."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state) -> None:
        self.state = state[0] if isinstance(state, tuple) and len(state) == 2 else state

    def get(self, key: str, default=None):
        return self.state.get(key, default) if isinstance(getattr(self, "state", None), dict) \
            else default


PLAIN = {"dict", "list", "set", "frozenset", "tuple", "int", "float", "str", "bytes", "bool"}


class PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        import builtins

        return getattr(builtins, name) if module == "builtins" and name in PLAIN else Opaque


def read_searcher_facts(storage: TrialStorage) -> SearcherFacts | None:
    """The newest searcher state's facts (check_searcher_state has read it whole); None for a
    state that is no OptunaSearch's (nothing to hold the journal to)."""
    name = newest(storage, SEARCHER_STATE)
    try:
        state = PlainUnpickler(io.BytesIO(storage.read_bytes(TUNE_DIR, name))).load()
    except Exception:  # noqa: BLE001 - Ray's own restore judges a state we cannot read
        return None
    if not isinstance(state, dict) or not isinstance(state.get("_ot_trials"), dict):
        return None
    numbers = {trial_id: frozen_number(trial) for trial_id, trial in state["_ot_trials"].items()}
    numbers = {trial_id: n for trial_id, n in numbers.items() if n is not None}
    # Reproducible mode holds tells back (``_ended``): those trials are not told yet.
    held = {outcome[0] for outcome in (state.get("_ended") or {}).values()
            if isinstance(outcome, tuple) and outcome}
    told = {t for t in state.get("_completed_trials") or () if t in numbers and t not in held}
    metric = state.get("_metric")
    # Several search.objectives: a list of metrics, and no intermediate values in the study
    # (Optuna refuses them there), so no reported epoch to look for.
    reported = {trial_id: result["epoch"] for trial_id, result in (state.get("_last") or {}).items()
                if trial_id in numbers and trial_id not in held and isinstance(result, dict)
                and isinstance(result.get("epoch"), int) and result.get(metric) is not None} \
        if isinstance(metric, str) else {}
    return SearcherFacts(state.get("_study_name") or "", numbers, told, reported)


def frozen_number(trial) -> int | None:
    """An optuna Trial's number, from the FrozenTrial it caches (pickled with it)."""
    frozen = trial.get("_cached_frozen_trial") if isinstance(trial, Opaque) else None
    number = frozen.get("_number") if isinstance(frozen, Opaque) else None
    return number if isinstance(number, int) else None


# ---- study.journal ---------------------------------------------------------------------------
def repair_journal(run_dir: Path, storage: TrialStorage | None = None) -> list[str]:
    """Cut off a torn last record, once the rest is known to hold everything Ray's searcher
    state refers to; refuse (nothing changed) a journal damaged before its end or cut short."""
    path = run_dir / STUDY_FILE
    if not path.is_file():
        raise DamagedRun(f"{path}: the Optuna study is missing, so the searcher cannot continue "
                         f"it; nothing was changed (`python -m sweep report {run_dir}` still "
                         f"reads the trials)")
    lines = path.read_bytes().split(b"\n")
    bad = [index for index, line in enumerate(lines) if line.strip() and not json_line(line)]
    if bad and bad != [len(lines) - 1]:  # damage before the end: records after it depend on it
        raise DamagedRun(f"{path}: record {bad[0] + 1} of the Optuna study is damaged; nothing "
                         f"was changed (`python -m sweep report {run_dir}` still reads the trials)")
    kept = lines[:-1] if bad else lines
    facts = read_searcher_facts(storage or TrialStorage(run_dir))
    if facts is not None:
        check_journal_holds(path, b"\n".join(kept), facts, run_dir)
    if not bad:
        return []
    write_text(path, b"\n".join(kept).decode("utf-8") + "\n")
    return [f"{path}: cut off a torn last record (a write the stopped driver never finished)"]


def check_journal_holds(path: Path, journal: bytes, facts: SearcherFacts, run_dir: Path) -> None:
    """DamagedRun unless ``journal`` holds every trial, tell and reported epoch that Ray's
    searcher state refers to. Ray saves that state at the same moments as its experiment state,
    after the journal records it refers to were written: a kill mid-write tears only a record
    written later. A journal that lacks older records was cut short (or replaced), and the
    resumed searcher would fail on the first trial the study lost (IndexError) or leave a
    finished trial RUNNING in Optuna for good."""
    lost = journal_gaps(journal, facts)
    if lost:
        raise DamagedRun(f"{path}: the Optuna study lacks {lost}, which Ray's searcher state "
                         f"refers to (whole records are missing, not only a torn last one); "
                         f"nothing was changed (put back a complete copy of it to resume; "
                         f"`python -m sweep report {run_dir}` still reads the trials)")


def journal_gaps(journal: bytes, facts: SearcherFacts) -> str:
    """What the searcher knows that ``journal`` does not ('' when nothing): the study is read
    from a copy, so the run directory stays untouched."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory(prefix="journal-check-") as folder:
        copy = Path(folder) / STUDY_FILE
        copy.write_bytes(journal.rstrip(b"\n") + b"\n" if journal.strip() else b"")
        storage = JournalStorage(JournalFileBackend(str(copy)))
        try:
            names = [facts.study_name] if facts.study_name else \
                optuna.get_all_study_names(storage)
            trials = optuna.load_study(study_name=names[0], storage=storage).get_trials(
                deepcopy=False) if names else []
        except Exception as error:  # noqa: BLE001 - a journal optuna cannot replay
            return f"a readable study ({type(error).__name__})"
    missing = sorted(trial_id for trial_id, number in facts.numbers.items()
                     if number >= len(trials))
    if missing:
        more = ", ..." if len(missing) > 3 else ""
        return f"{len(missing)} trial(s) ({', '.join(missing[:3])}{more})"
    unfinished = sorted(trial_id for trial_id in facts.told
                        if not trials[facts.numbers[trial_id]].state.is_finished())
    if unfinished:
        return f"the end of {len(unfinished)} finished trial(s) ({', '.join(unfinished[:3])})"
    steps = sorted(f"{trial_id} epoch {step}" for trial_id, step in facts.reported.items()
                   if step not in trials[facts.numbers[trial_id]].intermediate_values)
    return f"reported epochs ({', '.join(steps[:3])})" if steps else ""


def json_line(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except ValueError:
        return False


# ---- tune/<trial>/result.json ----------------------------------------------------------------
def repair_result_files(storage: TrialStorage) -> list[str]:
    notes = []
    for trial_id in storage.listdir(TUNE_DIR):
        if not storage.exists(TUNE_DIR, trial_id, RESULT_FILE) or storage.is_dir(
                TUNE_DIR, trial_id, RESULT_FILE):
            continue
        path = storage.where(TUNE_DIR, trial_id, RESULT_FILE)
        lines = storage.read_bytes(TUNE_DIR, trial_id, RESULT_FILE).splitlines()
        kept = [line for line in lines if json_line(line)]
        if len(kept) == len([line for line in lines if line.strip()]):
            continue
        storage.write_bytes("".join(line.decode("utf-8") + "\n" for line in kept).encode(),
                            TUNE_DIR, trial_id, RESULT_FILE)
        epochs = [json.loads(line).get("epoch") for line in kept]
        notes.append(f"{path}: dropped {len(lines) - len(kept)} damaged line(s) (torn or not "
                     f"UTF-8); kept epochs {epochs}")
    return notes


# ---- trial_status.json -----------------------------------------------------------------------
def rebuild_statuses(run_dir: Path, ray_status: dict[str, str], max_epochs: int,
                     told: dict[str, tuple[str, str]] | None = None,
                     storage: TrialStorage | None = None) -> list[str]:
    """Every trial folder gets a status: the recorded one, else one rebuilt from its rows."""
    storage = storage or TrialStorage(run_dir)
    path = run_dir / STATUS_FILE
    try:
        statuses = json.loads(path.read_bytes().decode("utf-8")) if path.exists() else {}
        if not isinstance(statuses, dict):
            raise ValueError("not a JSON object")
        problem = "" if path.exists() else "missing"
    except ValueError:
        statuses, problem = {}, "unreadable"
    rebuilt = {}
    for record in read_trials(storage):
        entry = statuses.get(record.trial_id)
        if isinstance(entry, dict) and entry.get("status") in (*ENDED, RUNNING):
            continue
        rebuilt[record.trial_id] = status_from_rows(storage, record, ray_status, max_epochs,
                                                    (told or {}).get(record.trial_id))
    if not rebuilt:
        return []
    statuses.update(rebuilt)
    write_statuses(run_dir, statuses)
    kinds = ", ".join(f"{sum(e['status'] == s for e in rebuilt.values())} {s}"
                      for s in sorted({e["status"] for e in rebuilt.values()}))
    why = f"was {problem}" if problem else f"lacked {len(rebuilt)} trial(s)"
    return [f"{path} {why}: rebuilt {len(rebuilt)} trial(s) from Ray's results in "
            f"{storage.where(TUNE_DIR)} ({kinds})"]


def status_from_rows(storage: TrialStorage, record, ray_status: dict[str, str], max_epochs: int,
                     told: tuple[str, str] | None = None) -> dict:
    rows = record.rows
    last = rows[-1] if rows else None
    ray = ray_status.get(record.trial_id, "")
    infeasible = infeasible_reason(storage, record.trial_id)
    if told:
        status, reason = told
    elif ray in RAY_UNFINISHED and not infeasible:
        status, reason = RUNNING, "interrupted: `resume` continues it"
    elif ray == "ERROR" or (not ray and record.has(ERROR_FILE)):
        status, reason = verdict(last, errored=True, max_epochs=max_epochs, infeasible=infeasible,
                                 error_text=failure_reason(record.error_text()))
    elif ray == "TERMINATED" or infeasible:
        status, reason = verdict(last, errored=False, max_epochs=max_epochs,
                                 infeasible=infeasible)
    else:  # Ray never recorded it: started after its last snapshot, lost with the driver
        status, reason = FAILED, "lost: the driver stopped before Ray recorded this trial"
    entry = {"status": status, "reason": reason, "config": dict(record.params),
             "epochs": int((last or {}).get("epoch") or 0)}
    values = [float(r["val_dice"]) for r in rows if "val_dice" in r]
    if values:
        entry["best_val_dice"] = max(values)
    return entry

