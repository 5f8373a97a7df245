"""Issue 24 item 6: a trial whose checkpoint cannot be read (damaged in the trial storage) restarts
from its previous good checkpoint, or from scratch, with one line saying so, instead of being
retried into failure. From scratch with the same seed, it trains to the same metrics."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from data_pipeline import load_data
from sweep.experiment import load_experiment
from sweep.faults import ENV_VAR as FAULTS_ENV
from sweep.faults import damage_file
from sweep.rundir import CHECKPOINT_FILE, STATUS_FILE, read_trials, storage_of
from sweep.trainable import readable_checkpoint
from tests.helpers import tiny_config
from training.checkpoints import CheckpointError, load_checkpoint
from training.loop import train

SMOKE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"
RESULT_KEYS = ("epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr")


@pytest.fixture(scope="module")
def trial_folder(tmp_path_factory):
    """A trial folder as Ray leaves it: checkpoint_000000/ (epoch 1), checkpoint_000001/ (2)."""
    root = tmp_path_factory.mktemp("trial")
    train(tiny_config(root, keep_checkpoints=0), load_data(synthetic_images=20, synthetic_size=32))
    trial = root / "tune" / "abc"
    for index, epoch in enumerate((1, 2)):
        (trial / f"checkpoint_{index:06d}").mkdir(parents=True)
        shutil.copy(root / "run" / "checkpoints" / f"checkpoint_epoch{epoch}.pth",
                    trial / f"checkpoint_{index:06d}" / CHECKPOINT_FILE)
    return trial


def test_the_damage_fault_makes_a_checkpoint_unreadable(trial_folder, tmp_path):
    copy = tmp_path / CHECKPOINT_FILE
    shutil.copy(trial_folder / "checkpoint_000001" / CHECKPOINT_FILE, copy)
    damage_file(copy)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(copy)


def test_a_damaged_checkpoint_falls_back_to_the_previous_good_one_in_one_line(
        trial_folder, tmp_path, caplog):
    trial = tmp_path / "abc"
    shutil.copytree(trial_folder, trial)
    latest = trial / "checkpoint_000001"
    assert readable_checkpoint(latest, [0], "abc") == latest  # sound: Tune's own
    damage_file(latest / CHECKPOINT_FILE)
    with caplog.at_level(logging.WARNING, logger="sweep.trainable"):
        assert readable_checkpoint(latest, [0], "abc") == trial / "checkpoint_000000"
    (line,) = [r.getMessage() for r in caplog.records]
    assert "trial abc: its checkpoint cannot be read" in line
    assert "restarting from checkpoint_000000 (epoch 1)" in line and "\n" not in line

    caplog.clear()
    damage_file(trial / "checkpoint_000000" / CHECKPOINT_FILE)
    with caplog.at_level(logging.WARNING, logger="sweep.trainable"):
        assert readable_checkpoint(latest, [0], "abc") is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.endswith("restarting from scratch (same seed: same metrics)")


def last_rows_by_number(run_dir: Path) -> dict[int, dict]:
    """Each trial's per-epoch results (the last row of each epoch), by trial number."""
    numbers = {t: e["number"] for t, e in json.loads((run_dir / STATUS_FILE).read_text())
               .items()}
    rows = {}
    for record in read_trials(storage_of(run_dir)):
        by_epoch = {row["epoch"]: {k: row.get(k) for k in RESULT_KEYS}
                    for row in record.rows if "epoch" in row}
        rows[numbers[record.trial_id]] = by_epoch
    return rows


def test_a_trial_retried_from_a_damaged_checkpoint_restarts_and_ends_as_undamaged(
        smoke_run, tmp_path, monkeypatch, caplog):
    """Trials with batch_size 4 hand Tune a damaged epoch-1 checkpoint, then crash at epoch 2:
    Tune's retry cannot read that checkpoint, the trial trains again from scratch, and every
    trial of the sweep ends with the metrics of the undamaged smoke sweep."""
    from sweep.runner import run_experiment

    monkeypatch.setenv(FAULTS_ENV, json.dumps({
        "damage_when": {"batch_size": 4}, "damage_epoch": 1,
        "error_when": {"batch_size": 4}, "error_epoch": 2}))
    with caplog.at_level(logging.WARNING, logger="sweep.status"):
        summary = run_experiment(load_experiment(SMOKE), tmp_path)
    status = json.loads((summary.run_dir / STATUS_FILE).read_text())
    expected = json.loads((smoke_run / STATUS_FILE).read_text())
    assert {e["number"]: (e["status"], e["epochs"]) for e in status.values()} == \
        {e["number"]: (e["status"], e["epochs"]) for e in expected.values()}
    assert summary.counts["failed"] == 0
    retried = [e for e in status.values() if e["config"]["batch_size"] == 4 and e["epochs"] > 1]
    assert retried  # the case happened: a damaged checkpoint was resumed from
    # ... and the driver said so, one line per restart (Ray keeps a trial's own log to itself)
    said = [r.getMessage() for r in caplog.records if r.name == "sweep.status"
            and "its checkpoint cannot be read" in r.getMessage()]
    assert len(said) == len(retried), said
    assert all(line.startswith("trial_") and "restarting from" in line for line in said), said
    assert last_rows_by_number(summary.run_dir) == last_rows_by_number(smoke_run)
