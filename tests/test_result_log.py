"""sweep/result_log.py: a trial's result.json and progress.csv keep every row the driver wrote
when a PAUSED trial continues before the background upload caught up; a fresh driver (a resume)
still starts from the stored copy. Ray's own loggers lose those rows (the contract test in
tests/test_private_apis.py shows it)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.fs

from sweep.result_log import ResultCsvLog, ResultJsonLog
from sweep.runner import sweep_callbacks


class FakeTrial:
    """What Ray's loggers read of a trial: its driver folder, its storage and a checkpoint
    (a trial with none starts from scratch and restores nothing)."""

    def __init__(self, local: Path, stored: Path, checkpoint=True):
        self.local_path, self.config, self.checkpoint = str(local), {"lr": 0.01}, checkpoint
        self.storage = type("Storage", (), {"trial_fs_path": str(stored),
                                            "storage_filesystem": pyarrow.fs.LocalFileSystem()})

    def init_local_path(self):
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def rows(path: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


def a_trial_paused_before_its_upload(tmp_path: Path) -> FakeTrial:
    """Epochs 1-2 written by the driver; the storage's copy uploaded after epoch 1 only."""
    trial = FakeTrial(tmp_path / "driver", tmp_path / "stored")
    for folder, epochs in ((tmp_path / "driver", (1, 2)), (tmp_path / "stored", (1,))):
        folder.mkdir()
        (folder / "result.json").write_text("".join(json.dumps({"epoch": e}) + "\n"
                                                    for e in epochs))
    return trial


def test_a_trial_that_continues_in_the_same_driver_keeps_the_rows_not_yet_uploaded(tmp_path):
    trial = a_trial_paused_before_its_upload(tmp_path)
    log = ResultJsonLog()
    log.log_trial_start(trial)  # the trial's actor starts again, from its epoch-2 checkpoint
    log.log_trial_result(3, trial, {"epoch": 3})
    log.log_trial_end(trial)
    assert rows(tmp_path / "driver" / "result.json") == [1, 2, 3]


def test_a_fresh_driver_continues_the_stored_rows(tmp_path):
    trial = a_trial_paused_before_its_upload(tmp_path)
    (tmp_path / "driver" / "result.json").unlink()  # a resume: the new driver has no copy
    log = ResultJsonLog()
    log.log_trial_result(2, trial, {"epoch": 2})
    log.log_trial_end(trial)
    assert rows(tmp_path / "driver" / "result.json") == [1, 2]


def test_progress_csv_keeps_its_rows_and_writes_its_header_once(tmp_path):
    trial = FakeTrial(tmp_path / "driver", tmp_path / "stored")
    (tmp_path / "stored").mkdir()
    log = ResultCsvLog()
    log.log_trial_result(1, trial, {"epoch": 1})
    log.log_trial_end(trial)  # paused; the storage never got the file
    (tmp_path / "stored" / "progress.csv").write_text("epoch\n")  # an upload of the header only
    log.log_trial_result(2, trial, {"epoch": 2})
    log.log_trial_end(trial)
    with open(tmp_path / "driver" / "progress.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]


def test_a_sweep_logs_through_them_in_place_of_tune_s_own(tmp_path):
    """Tune adds its JSON and CSV loggers only when none of their kind is given: these are."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from sweep.experiment import load_experiment
    from sweep.rundir import TrialStorage
    from sweep.search import trial_outcomes

    experiment = load_experiment(Path("experiments/smoke.yaml"), ["--wandb.enabled=false"])
    storage = TrialStorage(tmp_path, None, experiment.name)
    callbacks = sweep_callbacks(experiment, tmp_path, storage, trial_outcomes(experiment, storage))
    assert [type(c) for c in callbacks if isinstance(c, JsonLoggerCallback)] == [ResultJsonLog]
    assert [type(c) for c in callbacks if isinstance(c, CSVLoggerCallback)] == [ResultCsvLog]
