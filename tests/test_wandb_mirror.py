"""The mirror on a real (tiny) Ray Tune sweep: one offline W&B run per trial, grouped by the
sweep's name and carrying no sweep id, holding every metric row Ray recorded, value for value;
read back with `wandb leet inspect`. The API key in the environment is never written anywhere."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from data_pipeline import load_data
from sweep.wandb_mirror.callback import make_wandb_callback
from sweep.wandb_mirror.inspect import read_run
from sweep.wandb_mirror.records import metric_row
from sweep.wandb_mirror.sweep_config import build_sweep_config
from sweep.wandb_mirror.val_images import val_panel_reporter
from tests.helpers import TINY_DATA
from training.config import TrainConfig

FAKE_KEY = "fakekey-0123456789abcdef0123456789abcdef"
EPOCHS = 3
FAILING_LR = 0.02  # this trial raises in its first epoch (before ASHA could stop it)
WANDB = {"mode": "offline", "image_epochs": [1, -1], "image_count": 2}


def tiny_trainable(config, data=None):
    import os

    from ray import tune

    from training.loop import train

    train_config = TrainConfig.from_dict(dict(
        model="unet", width=4, synthetic_images=20, synthetic_size=32, epochs=EPOCHS,
        batch_size=4, eval_batch_size=4, val_percent=20, lr=config["lr"], threads=1,
        out_dir=os.path.join(tune.get_context().get_trial_dir(), "train")), "tiny")
    add_panel = val_panel_reporter(WANDB, data, EPOCHS)

    def report(metrics, state):
        if config["lr"] == FAILING_LR:
            raise RuntimeError("injected failure")
        add_panel(metrics, state)
        tune.report(metrics)

    train(train_config, data, report)


@pytest.fixture(scope="module", autouse=True)
def trainable_by_value():
    """Trial workers cannot import this test module: ship its functions by value."""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def mirrored_sweep(ray_session, tmp_path_factory):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    # Trial workers cannot import this test module: ship the trainable by value.
    run_dir = tmp_path_factory.mktemp("sweep") / "tiny"
    data = load_data(synthetic_images=20, synthetic_size=32)
    space = {"lr": {"loguniform": [1e-4, 3e-2]}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_API_KEY", FAKE_KEY)  # the writer process inherits it
        mirror = make_wandb_callback(
            WANDB, "tiny", run_dir, max_epochs=EPOCHS,
            sweep_config=build_sweep_config("tiny", space, "val_dice", "max",
                                            {"grace_period": 1, "reduction_factor": 2}),
            dataset={"fingerprint": data.fingerprint(), "source": data.source},
            fixed_config={"model": "unet", "width": 4})
        tuner = tune.Tuner(
            tune.with_parameters(tiny_trainable, data=data),
            param_space={"lr": tune.grid_search([3e-3, 1e-3, FAILING_LR, 1e-4, 3e-4])},
            tune_config=tune.TuneConfig(
                metric="val_dice", mode="max", max_concurrent_trials=2,
                scheduler=ASHAScheduler(time_attr="epoch", max_t=EPOCHS, grace_period=1,
                                        reduction_factor=2)),
            run_config=tune.RunConfig(storage_path=str(run_dir), name="tune", verbose=0,
                                      callbacks=[mirror]))
        grid = tuner.fit()
        best = grid.get_best_result()
        checkpoint = Path(best.path) / "train" / "checkpoints" / f"checkpoint_epoch{EPOCHS}.pth"
        mirror.finish(checkpoint, {"lr": best.config["lr"]},
                      {"val_dice": best.metrics["val_dice"]}, best.metrics["trial_id"])
    status = json.loads((run_dir / "wandb" / "mirror.json").read_text())
    return run_dir, status


def ray_rows(run_dir: Path) -> dict[str, list[dict]]:
    rows = {}
    for result in (run_dir / "tune").glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line]
        if lines:
            rows[lines[0]["trial_id"]] = lines
    return rows


def test_one_run_per_trial_grouped_by_name_without_a_sweep_id(mirrored_sweep):
    run_dir, status = mirrored_sweep
    trial_dirs = [p for p in (run_dir / "tune").iterdir() if (p / "params.json").exists()]
    assert len(status["runs"]) == len(trial_dirs) == 5
    for trial_id, entry in status["runs"].items():
        (folder,) = entry["dirs"]
        run = read_run(run_dir / folder)
        assert run.run["run_id"] == trial_id and run.run["run_group"] == "tiny"
        assert "sweep_id" not in run.run  # offline: `wandb-sync` makes the sweep
        assert run.exit_code is not None  # finished properly, nothing left open
    assert status["group"] == "tiny" and status["mode"] == "offline"
    assert not {"sweep_id", "local_sweep_id", "online_sweep_id"} & set(status)
    assert (run_dir / "wandb_sweep.yaml").is_file()


def test_every_ray_result_row_is_in_the_wandb_run_value_for_value(mirrored_sweep):
    run_dir, status = mirrored_sweep
    compared = 0
    for trial_id, rows in ray_rows(run_dir).items():
        history = {h["epoch"]: h for h in read_run(run_dir / status["runs"][trial_id]["dirs"][0])
                   .history}
        assert sorted(history) == [row["epoch"] for row in rows]
        for row in rows:
            logged = history[row["epoch"]]
            assert logged["_step"] == row["epoch"]
            for key, value in metric_row(row).items():
                assert logged[key] == value or (math.isnan(value) and math.isnan(logged[key])), \
                    f"{trial_id} epoch {row['epoch']} {key}: ray {value}, wandb {logged[key]}"
                compared += 1
    assert compared > 50  # train_loss, val_dice, ... and Ray's own numbers, every epoch


def test_states_config_summary_and_images(mirrored_sweep):
    run_dir, status = mirrored_sweep
    states = {}
    for trial_id, entry in status["runs"].items():
        run = read_run(run_dir / entry["dirs"][0])
        state, epochs = run.summary["state"], len(run.history)
        states[trial_id] = state
        assert run.run["tags"] == [state] and entry["state"] == state
        assert run.config["trial_id"] == trial_id and run.config["experiment"] == "tiny"
        assert run.config["model"] == "unet" and run.config["width"] == 4
        assert run.config["data_fingerprint"] == load_data(synthetic_images=20,
                                                           synthetic_size=32).fingerprint()
        if run.config["lr"] == FAILING_LR:
            assert state == "failed" and run.exit_code == 1 and epochs == 0
            assert "injected failure" in run.summary["state_reason"]
            continue
        assert state == ("complete" if epochs == EPOCHS else "pruned")
        assert run.summary["best/val_dice"] == max(h["val_dice"] for h in run.history)
        imaged = [h["epoch"] for h in run.history if "val_images.path" in h]
        assert imaged == ([1, EPOCHS] if epochs == EPOCHS else [1])
        for row in run.history:
            if "val_images.path" in row:
                assert (run_dir / entry["dirs"][0] / "files" / row["val_images.path"]).is_file()
    assert "complete" in states.values() and "failed" in states.values()


def test_summary_run_holds_the_data_set_and_best_model(mirrored_sweep):
    run_dir, status = mirrored_sweep
    summary = read_run(run_dir / status["summary_run"]["dir"])
    kinds = {a["type"]: a for a in summary.artifacts}
    assert set(kinds) == {"dataset", "model"}
    model = json.loads(kinds["model"]["metadata"])
    assert model["metric"] == "val_dice" and "lr" in model["config"]
    assert model["trial_id"] in status["runs"]
    assert json.loads(kinds["dataset"]["metadata"])["source"]["kind"] == "synthetic"


def test_api_key_is_written_nowhere(mirrored_sweep):
    run_dir, _ = mirrored_sweep
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [p for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_the_product_path_writes_the_api_key_nowhere(ray_session, tmp_path, monkeypatch, capfd):
    """`run_experiment` on experiments/smoke.yaml (2 trials, W&B offline) with a key in the
    environment: no file of the run directory and no line of output holds it."""
    from sweep.experiment import load_experiment
    from sweep.runner import run_experiment

    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    smoke = Path(__file__).resolve().parents[1] / "experiments" / "smoke.yaml"
    experiment = load_experiment(smoke, ["--search.trials=2", "--search.startup_trials=2",
                                         "--confirm.top_k=1", "--confirm.seeds=1",
                                         "--wandb.mode=offline", *TINY_DATA])
    run_dir = run_experiment(experiment, tmp_path / "runs").run_dir
    output = capfd.readouterr()
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"experiment.yaml", "best_config.yaml", "trial_status.json", "trials.csv",
            "mirror.json"} <= names and any(n.startswith("report.") for n in names)
    assert any(p.suffix == ".wandb" for p in files)  # the offline W&B runs were written
    assert any("tune" in p.relative_to(run_dir).parts for p in files)
    assert [p for p in files if FAKE_KEY.encode() in p.read_bytes()] == []
    assert FAKE_KEY not in output.out and FAKE_KEY not in output.err


def test_a_broken_wandb_never_stops_the_sweep(ray_session, tmp_path, monkeypatch, capfd):
    """wandb cannot even be imported by the writer: one line says so, every trial finishes."""
    from ray import tune

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "wandb.py").write_text("raise ImportError('wandb is broken here')\n")
    # The writer process starts inside fit() with this environment; trial workers were
    # started with the Ray session and keep theirs.
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "broken"))
    data = load_data(synthetic_images=20, synthetic_size=32)
    mirror = make_wandb_callback({"mode": "offline"}, "broken", tmp_path / "run", max_epochs=2)
    grid = tune.Tuner(
        tune.with_parameters(tiny_trainable, data=data),
        param_space={"lr": tune.grid_search([1e-3, 3e-3])},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "run"), name="tune", verbose=0,
                                  callbacks=[mirror])).fit()
    mirror.finish()
    assert not grid.errors and len(grid) == 2
    assert all(result.metrics["epoch"] == EPOCHS for result in grid)
    lines = [line for line in capfd.readouterr().err.splitlines() if "W&B" in line]
    assert len(lines) == 1 and "ImportError: wandb is broken here" in lines[0]


def test_the_smoke_sweep_is_mirrored_in_full(smoke_run):
    """The product path (`run_experiment` on experiments/smoke.yaml): every trial of
    trial_status.json is a W&B run with its state, every Ray row is in it, and the sweep's
    best.pth is the model artifact."""
    status = json.loads((smoke_run / "wandb" / "mirror.json").read_text())
    statuses = json.loads((smoke_run / "trial_status.json").read_text())
    assert set(status["runs"]) == set(statuses)
    rows = ray_rows(smoke_run)
    for trial_id, entry in status["runs"].items():
        run = read_run(smoke_run / entry["dirs"][-1])
        # One vocabulary: W&B's state is trial_status.json's status, word for word.
        assert run.summary["state"] == statuses[trial_id]["status"] and "sweep_id" not in run.run
        assert run.run["run_group"] == status["group"]
        history = {h["epoch"]: h for h in run.history}
        assert rows.get(trial_id), f"trial {trial_id} has no Ray result rows"
        for row in rows[trial_id]:
            assert {k: history[row["epoch"]][k] for k in metric_row(row)} == metric_row(row)
    summary = read_run(smoke_run / status["summary_run"]["dir"])
    (model,) = [a for a in summary.artifacts if a["type"] == "model"]
    assert json.loads(model["metadata"])["config"] == yaml.safe_load(
        (smoke_run / "best_config.yaml").read_text())
    sweep = yaml.safe_load((smoke_run / "wandb_sweep.yaml").read_text())
    assert set(sweep["parameters"]) == {"lr", "batch_size"}  # the seed is never searched
