"""Issue 24 item 5: a study.journal cut short (whole records lost, not just a torn last one) is
refused before anything changes, in one line; a torn last record (a kill mid-write) is still cut
off and the sweep resumes with Optuna, Ray and trial_status.json agreeing."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweep.__main__ import main
from sweep.recover import DamagedRun, check_before_resume, read_searcher_facts
from sweep.rundir import LOCK_FILE, STUDY_FILE, TrialStorage, journal_storage, read_statuses


def snapshot(run_dir: Path) -> dict:
    return {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != LOCK_FILE}


def test_a_journal_cut_to_two_thirds_is_refused_in_one_line_with_nothing_changed(run_copy,
                                                                                  capsys):
    journal = run_copy / STUDY_FILE
    journal.write_bytes(journal.read_bytes()[: journal.stat().st_size * 2 // 3])
    before = snapshot(run_copy)
    assert main(["resume", str(run_copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert str(journal) in err[0] and "lacks" in err[0] and "nothing was changed" in err[0]
    assert snapshot(run_copy) == before


def test_a_journal_missing_whole_records_at_its_end_is_refused(run_copy):
    """Cut at a record boundary: every line parses, yet the tells of finished trials are gone
    (the resumed searcher would never tell them again: RUNNING in Optuna for good)."""
    journal = run_copy / STUDY_FILE
    lines = journal.read_bytes().splitlines()
    journal.write_bytes(b"\n".join(lines[:-3]) + b"\n")
    before = snapshot(run_copy)
    with pytest.raises(DamagedRun, match="lacks the end of .* finished trial"):
        check_before_resume(run_copy, max_epochs=3, study_name="smoke")
    assert snapshot(run_copy) == before


def test_the_searcher_state_is_read_without_running_its_code(run_copy):
    facts = read_searcher_facts(TrialStorage(run_copy))
    statuses = read_statuses(run_copy)
    assert facts.study_name == "smoke" and set(facts.numbers) == set(statuses)
    assert facts.told == set(statuses)  # a finished sweep: every trial told
    assert sorted(facts.numbers.values()) == list(range(len(statuses)))


def test_a_torn_last_record_is_cut_and_the_resume_agrees_everywhere(run_copy):
    from sweep.runner import resume_experiment

    journal = run_copy / STUDY_FILE
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "worker_id": "x", "tri')
    before = read_statuses(run_copy)
    summary = resume_experiment(run_copy)
    assert any("torn last record" in note for note in summary.recovered), summary.recovered
    after = read_statuses(run_copy)
    assert {t: e["status"] for t, e in after.items()} == \
        {t: e["status"] for t, e in before.items()}
    study = optuna.load_study(study_name="smoke", storage=journal_storage(run_copy))
    assert {t.user_attrs["ray_trial_id"] for t in study.trials} == set(after)
    assert all(t.state.is_finished() for t in study.trials)
    assert (run_copy / "best.pth").is_file()


def test_a_killed_drivers_journal_lock_is_cleared_when_the_run_dir_is_taken(run_copy):
    """A driver killed while appending to the journal leaves Optuna's lock symlink. In a moved
    run dir it points at a journal that is gone, and Optuna then retries forever at full CPU
    (the resume of tests/test_copied_run.py hung so). Whoever takes the run dir clears it."""
    import threading

    import optuna

    from sweep import runlock
    from sweep.rundir import STUDY_LOCK_FILE, journal_storage

    lock = run_copy / STUDY_LOCK_FILE
    lock.symlink_to("/nonexistent/moved-away/study.journal")
    with runlock.hold(run_copy):
        assert not lock.is_symlink()
        asked = []
        study = optuna.load_study(study_name="smoke", storage=journal_storage(run_copy))
        worker = threading.Thread(target=lambda: asked.append(study.ask()), daemon=True)
        worker.start()
        worker.join(timeout=30)  # an append takes the lock
        assert asked, "the journal lock was never acquired"
