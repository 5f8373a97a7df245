"""The run directory's one vocabulary, its verdict function, and the one atomic save."""
from __future__ import annotations

import pytest

from sweep import rundir
from sweep.outcome import verdict
from training.atomic import DiskFullError, atomic_write, write_json


def test_verdict_names_every_way_a_trial_ends():
    assert verdict({"epoch": 5}, errored=False, max_epochs=5)[0] == rundir.COMPLETE
    status, reason = verdict({"epoch": 2}, errored=False, max_epochs=5)
    assert status == rundir.PRUNED and "after epoch 2 of 5" in reason
    assert "time budget" in verdict({"epoch": 2}, errored=False, max_epochs=5, budget=True)[1]
    assert verdict(None, errored=False, max_epochs=5,
                   infeasible="out of memory: x") == (rundir.INFEASIBLE, "out of memory: x")
    assert verdict({"epoch": 1}, errored=True, max_epochs=5,
                   error_text="error: torch.OutOfMemoryError: CUDA out of memory")[0] \
        == rundir.INFEASIBLE
    assert verdict({"epoch": 1}, errored=True, max_epochs=5,
                   error_text="error: ValueError: bad") == (rundir.FAILED, "error: ValueError: bad")
    assert set(rundir.FINISHED) < set(rundir.ENDED) < set(rundir.STATUSES)


def test_infeasible_record_round_trips_and_garbage_reads_as_none(tmp_path):
    storage = rundir.TrialStorage(tmp_path)
    rundir.record_infeasible(storage, "t1", "out of memory: 3 GiB")
    assert rundir.infeasible_reason(storage, "t1") == "out of memory: 3 GiB"
    assert rundir.infeasible_reason(storage, "t2") is None
    (tmp_path / rundir.INFEASIBLE_DIR / "t3.json").write_bytes(b"\xff\xfe not json")
    assert rundir.infeasible_reason(storage, "t3") is None


def test_atomic_write_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    target = write_json(tmp_path / "status.json", {"a": 1})

    def half_then_fail(temporary):
        temporary.write_text('{"a": 2, "b"')
        raise OSError(28, "No space left on device")

    with pytest.raises(DiskFullError, match="disk full: cannot write .*status.json"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == '{\n "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]

    def interrupted(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_statuses_tally_and_best(tmp_path):
    statuses = {"a": {"status": rundir.COMPLETE, "best_val_dice": 0.5},
                "b": {"status": rundir.PRUNED, "best_val_dice": 0.7},
                "c": {"status": rundir.RUNNING}}
    rundir.write_statuses(tmp_path, statuses)
    assert rundir.read_statuses(tmp_path) == statuses
    assert rundir.tally(statuses)[rundir.PRUNED] == 1
    assert rundir.best_so_far(statuses) == (0.7, "b")
    (tmp_path / rundir.STATUS_FILE).write_bytes(b"\x80\x81")
    assert rundir.read_statuses(tmp_path) == {}
