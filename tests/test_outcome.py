"""A trial's outcome is decided once, by one owner (sweep/outcome.py), whoever asks first: the
searcher (by trial id, first in Ray Tune's order), the status log or the W&B mirror (with Tune's
trial). The decision reads the trial's infeasible/ record once, and survives a resume."""
from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import optuna

from sweep import outcome
from sweep.experiment import load_experiment
from sweep.failures import NO_ERROR_TEXT
from sweep.outcome import TrialOutcomes
from sweep.rundir import (
    COMPLETE,
    FAILED,
    INFEASIBLE,
    PRUNED,
    TrialStorage,
    journal_storage,
    read_statuses,
    record_infeasible,
)
from sweep.search import make_searcher

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
OUT_OF_MEMORY = "Traceback (most recent call last):\nRuntimeError: can't allocate memory\n"


def tune_trial(trial_id: str, epoch: int, error_file: Path | None = None) -> SimpleNamespace:
    """What the owner reads of Ray Tune's Trial."""
    return SimpleNamespace(trial_id=trial_id, last_result={"epoch": epoch},
                           error_file=str(error_file) if error_file else None,
                           get_error=lambda: None)


def counted_reads(monkeypatch) -> list[str]:
    reads = []
    read = outcome.infeasible_reason
    monkeypatch.setattr(outcome, "infeasible_reason",
                        lambda storage, trial_id: reads.append(trial_id) or read(storage, trial_id))
    return reads


def test_the_first_to_ask_decides_and_the_infeasible_record_is_read_once(tmp_path, monkeypatch):
    reads = counted_reads(monkeypatch)
    storage = TrialStorage(tmp_path)
    outcomes = TrialOutcomes(storage, max_epochs=3)
    told = outcomes.decide("t1", {"epoch": 2}, errored=False)  # Tune tells the searcher first
    record_infeasible(storage, "t1", "out of memory: too late to count")
    logged = outcomes.of_trial(tune_trial("t1", 2), errored=False)  # then the callbacks
    assert logged is told and told == (PRUNED, "stopped by ASHA after epoch 2 of 3")
    assert reads == ["t1"]


def test_the_searcher_asking_by_id_reads_the_error_of_tune_s_trial(tmp_path):
    """Ray writes a failed trial's error.txt before it tells the searcher: an error that says
    out of memory is infeasible in the study as in trial_status.json."""
    error_file = tmp_path / "error.txt"
    error_file.write_text(OUT_OF_MEMORY)
    outcomes = TrialOutcomes(TrialStorage(tmp_path), max_epochs=3, budget=True)
    failed = tune_trial("t2", 1, error_file)
    outcomes.watch([tune_trial("t1", 3), failed])
    status, reason = outcomes.decide("t2", {"epoch": 1}, errored=True)
    assert status == INFEASIBLE and "can't allocate memory" in reason
    assert outcomes.of_trial(failed, errored=True) == (status, reason)
    # A searcher driven without Tune (bench/lc_replay.py) has no error text to read.
    alone = TrialOutcomes(TrialStorage(tmp_path), max_epochs=3)
    assert alone.decide("t2", {"epoch": 1}, errored=True) == (FAILED, NO_ERROR_TEXT)
    assert "time budget" in outcomes.decide("t3", {"epoch": 1}, errored=False)[1]


def test_an_outcome_recorded_before_a_resume_outlives_a_stale_replay(tmp_path, monkeypatch):
    reads = counted_reads(monkeypatch)
    outcomes = TrialOutcomes(TrialStorage(tmp_path), max_epochs=3)
    outcomes.remember({"t1": (COMPLETE, "trained all 3 epochs")})
    # Ray replays the finished trial from an older snapshot: its last result says epoch 1.
    assert outcomes.of_trial(tune_trial("t1", 1), errored=False) == (COMPLETE,
                                                                    "trained all 3 epochs")
    assert reads == []


def test_the_owner_pickles_its_settings_without_tune_s_trials_or_its_decisions(tmp_path):
    outcomes = TrialOutcomes(TrialStorage(tmp_path), max_epochs=3, budget=True)
    outcomes.watch([tune_trial("t1", 3)])
    outcomes.decide("t1", {"epoch": 3}, errored=False)
    copy = pickle.loads(pickle.dumps(outcomes))
    assert (copy.decided, copy.trials) == ({}, [])
    assert (copy.max_epochs, copy.budget, copy.storage.root) == (3, True, outcomes.storage.root)


def test_a_restored_searcher_keeps_the_owner_it_shares_with_the_callbacks(tmp_path):
    """Tune unpickles the searcher and the callbacks from one tuner.pkl (one owner), then
    restores the searcher's saved state, which holds a copy of the owner: the copy is left."""
    experiment = load_experiment(QUICKSTART, ["--search.trials=4", "--search.mode=async"])
    storage = TrialStorage(tmp_path)

    def searcher(outcomes: TrialOutcomes):
        limiter = make_searcher(experiment, tmp_path, storage, outcomes=outcomes,
                                study_storage=optuna.storages.InMemoryStorage())
        limiter.set_search_properties("val_dice", "max", {})
        return limiter.searcher

    saved = searcher(TrialOutcomes(storage, max_epochs=6))
    assert saved.suggest("t0")
    saved.save(str(tmp_path / "searcher.pkl"))
    live = TrialOutcomes(storage, max_epochs=6)
    restored = searcher(live)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored._outcomes is live and restored._order == {"t0": 0}


def test_the_study_tells_what_trial_status_json_records(smoke_run):
    """One decision everywhere: every trial's status and reason as the searcher told them to
    Optuna are trial_status.json's, word for word."""
    study = optuna.load_study(study_name="smoke", storage=journal_storage(smoke_run))
    told = {t.user_attrs["ray_trial_id"]: (t.user_attrs["status"], t.user_attrs["reason"])
            for t in study.trials}
    recorded = {t: (e["status"], e["reason"]) for t, e in read_statuses(smoke_run).items()}
    assert told and told == recorded


def test_a_restored_sweep_has_one_owner_and_the_runner_finds_its_mirror(tmp_path):
    """What `resume` gets back from Tune: the searcher and the callbacks unpickled from one
    tuner.pkl, one owner between them, and the W&B mirror the end of the sweep finishes."""
    from ray import tune

    from sweep.runner import sweep_mirror
    from sweep.search import restored_callbacks, run_config, trial_outcomes, tune_config
    from sweep.status import TrialStatusLog
    from sweep.wandb_mirror.callback import make_wandb_callback

    def trainable(config):
        return None

    experiment = load_experiment(QUICKSTART, ["--search.trials=4"])
    storage = TrialStorage(tmp_path)
    outcomes = trial_outcomes(experiment, storage)
    callbacks = [TrialStatusLog(tmp_path, storage, outcomes, total=4),
                 make_wandb_callback({"mode": "offline"}, "quick", tmp_path, outcomes=outcomes)]
    tune.Tuner(trainable, tune_config=tune_config(experiment, tmp_path, storage,
                                                  outcomes=outcomes),
               run_config=run_config(storage, "tune", callbacks, max_failures=0))
    restored = tune.Tuner.restore(storage.path("tune"), trainable=trainable)
    status_log, mirror = restored_callbacks(restored)
    searcher = restored._local_tuner._tune_config.search_alg.searcher
    assert searcher._outcomes is status_log.outcomes is mirror.outcomes
    assert status_log.outcomes is not outcomes  # unpickled: a resumed driver's own
    assert sweep_mirror(restored_callbacks(restored)) is mirror
    # The same tuner.pkl resumed in a copy of the run directory writes into the copy.
    copy = TrialStorage(tmp_path / "copy")
    for callback in (status_log, mirror):
        callback.relocate(tmp_path / "copy", copy)
    assert status_log.run_dir == Path(mirror.plan["run_dir"]) == (tmp_path / "copy").resolve()
    assert status_log.outcomes.storage is status_log.storage is copy


def test_a_sweep_saved_before_the_owner_existed_still_resumes(tmp_path):
    """tuner.pkl and searcher-state of older sweeps hold a status log, a mirror and a searcher
    without an outcome owner: the resume gives the callbacks one and the searcher its own, by
    the same rule, from the settings it saved."""
    from sweep.runner import rebind_restored
    from sweep.status import TrialStatusLog
    from sweep.wandb_mirror.callback import make_wandb_callback

    experiment = load_experiment(QUICKSTART, ["--search.trials=4"])
    storage = TrialStorage(tmp_path)
    owner = TrialOutcomes(storage, max_epochs=6)
    status_log = TrialStatusLog(tmp_path, storage, owner, total=4)
    mirror = make_wandb_callback({"mode": "offline"}, "quick", tmp_path, outcomes=owner)
    for callback in (status_log, mirror):
        del callback.outcomes  # as unpickled from an older tuner.pkl
    rebind_restored([status_log, mirror], experiment, tmp_path, storage)
    assert status_log.outcomes is mirror.outcomes
    assert status_log.outcomes.max_epochs == experiment.scheduler.max_epochs
    status_log.setup()  # raised AttributeError on such a sweep

    old = make_searcher(experiment, tmp_path, storage).searcher
    del old._outcomes
    old._trial_storage, old._max_epochs, old._budget = storage, 6, False  # what it kept then
    old.save(str(tmp_path / "searcher.pkl"))
    restored = make_searcher(experiment, tmp_path, storage).searcher
    del restored._outcomes
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored._outcomes.decide("t0", {"epoch": 6}, False) == (COMPLETE,
                                                                      "trained all 6 epochs")
