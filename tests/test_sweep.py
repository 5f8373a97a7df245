"""The sweep end to end on CPU: experiments/smoke.yaml through Ray Tune + Optuna + ASHA, the
run directory of docs/RUN_LAYOUT.md, the Optuna study, the infeasible path and confirm."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

from sweep.confirm import confirm_run
from sweep.experiment import load_experiment
from sweep.faults import ENV_VAR as FAULTS_ENV
from sweep.rundir import journal_storage, read_trials, storage_of
from sweep.runner import run_experiment
from tests.helpers import TINY_DATA
from training.config import TrainConfig
from training.predict import load_predictor, predict_mask

SMOKE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"


def statuses(run_dir: Path) -> dict:
    return json.loads((run_dir / "trial_status.json").read_text())


def test_smoke_sweep_writes_the_run_layout(smoke_run):
    experiment = yaml.safe_load((smoke_run / "experiment.yaml").read_text())
    assert experiment["name"] == "smoke" and experiment["search"]["trials"] == 6
    status = statuses(smoke_run)
    records = {r.trial_id: r for r in read_trials(storage_of(smoke_run))}
    assert set(status) == set(records) and len(records) == 6
    for trial_id, entry in status.items():
        assert entry["status"] in ("complete", "pruned"), entry
        epochs = [row["epoch"] for row in records[trial_id].rows]
        assert epochs == list(range(1, entry["epochs"] + 1))  # one row per epoch, in order
        assert records[trial_id].params == entry["config"]
        assert set(entry["config"]) == {"lr", "batch_size"}  # never the seed
    kinds = {entry["status"] for entry in status.values()}
    assert kinds == {"complete", "pruned"}  # ASHA stopped some (one trial at a time: fixed)
    # `run` writes the compare-runs report by itself when the sweep ends
    assert all((smoke_run / name).is_file() for name in ("report.html", "report.md", "trials.csv"))


def test_best_model_and_config_are_the_best_trials(smoke_run, tmp_path):
    status = statuses(smoke_run)
    best_id = max(status, key=lambda t: status[t]["best_val_dice"])
    best = TrainConfig.from_dict(yaml.safe_load((smoke_run / "best_config.yaml").read_text()))
    assert {k: getattr(best, k) for k in status[best_id]["config"]} == status[best_id]["config"]
    assert status[best_id]["best_val_dice"] > 0.3  # the tiny UNet learns something
    predictor = load_predictor(smoke_run / "best.pth", "cpu")  # predict-ready
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8))
    assert predict_mask(predictor, image).shape == (40, 56)


def test_optuna_load_study_reads_every_trial(smoke_run):
    study = optuna.load_study(study_name="smoke", storage=journal_storage(smoke_run))
    by_ray_id = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    expected = {"complete": optuna.trial.TrialState.COMPLETE,
                "pruned": optuna.trial.TrialState.PRUNED}
    status = statuses(smoke_run)
    assert set(by_ray_id) == set(status) and len(study.trials) == len(status)
    for trial_id, entry in status.items():
        trial = by_ray_id[trial_id]
        assert trial.state == expected[entry["status"]]
        assert len(trial.intermediate_values) == entry["epochs"]  # ASHA's stop epoch included
        values = trial.intermediate_values
        # complete: the best epoch (its checkpoint is the one kept); pruned: Optuna's last value
        assert trial.value == (max(values.values()) if entry["status"] == "complete"
                               else values[max(values)])
    assert {t.state for t in study.trials} == set(expected.values())


def test_out_of_memory_trial_is_infeasible_and_the_sweep_goes_on(ray_session, tmp_path,
                                                                 monkeypatch):
    # Set after Ray started: the driver reads it (sweep/faults.py), the workers never see it.
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"oom_when": {"batch_size": 2}}))
    experiment = load_experiment(SMOKE, ["--search.trials=3", "--scheduler.max_epochs=2",
                                         *TINY_DATA])
    summary = run_experiment(experiment, tmp_path)
    status = statuses(summary.run_dir)
    infeasible = {t for t, e in status.items() if e["status"] == "infeasible"}
    assert infeasible and summary.counts["infeasible"] == len(infeasible)
    assert len(infeasible) < len(status) == 3  # the others ran
    study = optuna.load_study(study_name="smoke", storage=journal_storage(summary.run_dir))
    for trial in study.trials:
        ray_id = trial.user_attrs["ray_trial_id"]
        assert (trial.state == optuna.trial.TrialState.FAIL) == (ray_id in infeasible)
        if ray_id in infeasible:
            assert status[ray_id]["config"]["batch_size"] == 2
            assert "out of memory" in status[ray_id]["reason"]
            assert "can't allocate memory" in status[ray_id]["reason"]  # torch's, on CPU
            assert "out of memory" in trial.user_attrs["reason"]
    assert summary.best_trial not in infeasible and (summary.run_dir / "best.pth").exists()


def test_confirm_reruns_the_top_configs_with_new_seeds(smoke_run, tmp_path):
    run_dir = tmp_path / "smoke"
    shutil.copytree(smoke_run, run_dir)
    result = confirm_run(run_dir, top_k=1, seeds=2)
    assert json.loads((run_dir / "confirm.json").read_text()) == result
    (entry,) = result["configs"]
    status = statuses(run_dir)
    assert entry["source_trial"] == max(status, key=lambda t: status[t]["best_val_dice"])
    assert "seed" not in entry["config"] and entry["n"] == 2 == len(entry["val_dice"])
    assert set(entry["seeds"]).isdisjoint(load_experiment(SMOKE).seeds())  # new seeds
    assert entry["mean"] == pytest.approx(np.mean(entry["val_dice"]))
    assert entry["std"] == pytest.approx(np.std(entry["val_dice"], ddof=1))
    assert result["epochs"] == 3  # all epochs: no early stopping in confirm runs
    for record in read_trials(storage_of(run_dir), "confirm"):
        assert [row["epoch"] for row in record.rows] == [1, 2, 3]


def test_a_crashed_trial_is_retried_from_its_last_checkpoint(ray_session, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"error_when": {"batch_size": 2},
                                               "error_epoch": 2}))
    experiment = load_experiment(SMOKE, ["--search.trials=2", *TINY_DATA,
                                         "--scheduler.grace_period=3"])  # no pruning here
    summary = run_experiment(experiment, tmp_path)
    status = statuses(summary.run_dir)
    crashed = [t for t, e in status.items() if e["config"]["batch_size"] == 2]
    assert crashed and summary.counts["complete"] == 2
    for trial_id in crashed:
        (record,) = [r for r in read_trials(storage_of(summary.run_dir)) if r.trial_id == trial_id]
        assert [row["epoch"] for row in record.rows] == [1, 2, 3]  # epoch 1 not run again
        assert f"injected by {FAULTS_ENV} error_when" in record.read_text("error.txt")


def test_the_speed_probe_fixes_num_workers_for_every_trial(ray_session, tmp_path):
    import torch

    experiment = load_experiment(SMOKE, ["--space.num_workers={choice: [0, 1]}",
                                         "--search.trials=2", "--scheduler.max_epochs=1",
                                         "--search.probe_steps=3"])
    summary = run_experiment(experiment, tmp_path)
    run_dir = summary.run_dir
    probe = json.loads((run_dir / "speed_probe.json").read_text())
    assert [r["num_workers"] for r in probe["rows"]] == [0, 1]
    chosen = probe["chosen"]["num_workers"]
    # TPE never models it: neither the study's distributions nor the trials' params hold it
    study = optuna.load_study(study_name="smoke", storage=journal_storage(run_dir))
    assert all("num_workers" not in t.distributions for t in study.trials)
    assert "num_workers" not in yaml.safe_load((run_dir / "experiment.yaml").read_text())["space"]
    records = read_trials(storage_of(run_dir))
    assert len(records) == 2
    for record in records:
        assert "num_workers" not in record.params
        for saved in record.path.glob("checkpoint_*/checkpoint.pth"):  # what the trial ran
            config = torch.load(saved, weights_only=True)["config"]
            assert config["num_workers"] == chosen
    assert "Speed probe" in (run_dir / "report.md").read_text()


def test_trials_record_start_up_and_the_report_shows_the_timeline(smoke_run):
    for entry in statuses(smoke_run).values():
        assert entry["placed_at"] <= entry["first_step_at"] < entry["ended_at"]
        assert entry["startup_s"] == pytest.approx(entry["first_step_at"] - entry["placed_at"])
        assert entry["compute_s"] > 0
    for record in read_trials(storage_of(smoke_run)):  # each epoch's end, finer than Ray's
        ends = [row["reported_at"] for row in record.rows]
        assert ends and ends == sorted(ends) and all(isinstance(end, float) for end in ends)
        # Ray stamps the row a moment later, in whole seconds
        assert all(abs(end - row["timestamp"]) < 2 for end, row in zip(ends, record.rows))
    report = (smoke_run / "report.md").read_text()
    assert "effective concurrency" in report and "median start-up" in report
