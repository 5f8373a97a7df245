"""The writer, driven in-process with records like the callback's: real offline runs read
back with `wandb leet inspect`; online only up to the W&B API calls, which are replaced."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import wandb

from sweep.wandb_mirror.channel import MirrorChannel, writer_env
from sweep.wandb_mirror.inspect import read_run
from sweep.wandb_mirror.writer import MirrorWriter, described

SWEEP_CONFIG = {"name": "exp", "method": "bayes", "metric": {"name": "val_dice",
                                                           "goal": "maximize"},
                "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4,
                                      "max": 1e-2}}}


def make_plan(run_dir: Path, mode: str = "offline", **changes) -> dict:
    plan = {"experiment": "exp", "run_dir": str(run_dir), "mode": mode, "project": "proj",
            "entity": None, "summary_run_id": "summary-abc123",
            "sweep_config": SWEEP_CONFIG, "metric": "val_dice", "metric_mode": "max",
            "max_epochs": 3, "dataset": {"fingerprint": "abc", "source": {"kind": "synthetic"}},
            "artifacts": True}
    return {**plan, **changes}


def feed_trial(writer, trial_id: str, dices: list[float], state: str, image=None) -> None:
    writer.handle({"kind": "trial_start", "trial_id": trial_id, "run_id": trial_id,
                   "name": f"exp-{trial_id}", "config": {"lr": 0.01, "trial_id": trial_id}})
    for epoch, dice in enumerate(dices, start=1):
        writer.handle({"kind": "result", "trial_id": trial_id, "step": epoch,
                       "row": {"epoch": epoch, "val_dice": dice, "train_loss": 1 / epoch},
                       "image": image if epoch == 1 else None})
    writer.handle({"kind": "trial_end", "trial_id": trial_id, "state": state, "reason": ""})


def runs_of(run_dir: Path) -> dict:
    status = json.loads((run_dir / "wandb" / "mirror.json").read_text())
    return {trial: read_run(run_dir / entry["dirs"][-1])
            for trial, entry in status["runs"].items()}


def test_offline_runs_hold_history_summary_state_and_image(tmp_path):
    image = tmp_path / "panel.png"
    from PIL import Image
    Image.new("RGB", (12, 4)).save(image)
    reports = []
    writer = MirrorWriter(make_plan(tmp_path), report=reports.append)
    feed_trial(writer, "t_00000", [0.2, 0.5, 0.4], "complete", image=str(image))
    feed_trial(writer, "t_00001", [0.1], "pruned")
    feed_trial(writer, "t_00002", [], "failed")
    writer.handle({"kind": "close"})

    runs = runs_of(tmp_path)
    assert reports == [] and set(runs) == {"t_00000", "t_00001", "t_00002"}
    done = runs["t_00000"]
    # Offline: no sweep id in any run record; the runs are tied by their group.
    assert all("sweep_id" not in run.run for run in runs.values())
    assert {run.run["run_group"] for run in runs.values()} == {"exp"}
    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    assert not {"sweep_id", "local_sweep_id", "online_sweep_id"} & set(status)
    assert status["group"] == "exp" and status["mode"] == "offline"
    assert [row["epoch"] for row in done.history] == [1, 2, 3]
    assert [row["_step"] for row in done.history] == [1, 2, 3]
    assert done.history[0]["val_images._type"] == "image-file"
    assert done.summary["best/val_dice"] == 0.5 and done.summary["best/epoch"] == 2
    assert done.summary["val_dice"] == 0.4  # the last value stays W&B's summary value
    assert done.run["tags"] == ["complete"] and done.exit_code == 0
    assert runs["t_00001"].run["tags"] == ["pruned"] and runs["t_00001"].exit_code == 0
    assert runs["t_00002"].run["tags"] == ["failed"] and runs["t_00002"].exit_code == 1
    assert runs["t_00002"].history == []


def test_close_finishes_runs_still_open_and_logs_the_data_set(tmp_path):
    writer = MirrorWriter(make_plan(tmp_path), report=lambda message: None)
    writer.handle({"kind": "trial_start", "trial_id": "t1", "run_id": "t1", "name": "exp-t1",
                   "config": {}})
    writer.handle({"kind": "result", "trial_id": "t1", "step": 1,
                   "row": {"epoch": 1, "val_dice": 0.3}, "image": None})
    writer.handle({"kind": "close"})
    run = runs_of(tmp_path)["t1"]
    # Not ended: "running", as trial_status.json keeps it, so a resume continues the run.
    assert run.history[0]["val_dice"] == 0.3 and run.summary["state"] == "running"
    assert run.exit_code == 1

    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    summary = read_run(tmp_path / status["summary_run"]["dir"])
    assert "sweep_id" not in summary.run  # the summary run stays out of the sweep's views
    (dataset,) = summary.artifacts
    assert dataset["type"] == "dataset" and json.loads(dataset["metadata"])["fingerprint"] == "abc"


def test_online_creates_the_sweep_first_and_ties_every_run_to_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(wandb, "sweep", lambda config, project=None, entity=None:
                        calls.append(("sweep", config, project, entity)) or "wb5weep1")
    real_init = wandb.init

    def init(**kwargs):  # the network call replaced: the same run, written offline
        calls.append(("init", kwargs["id"], kwargs["settings"].sweep_id, kwargs["mode"]))
        return real_init(**{**kwargs, "mode": "offline"})

    monkeypatch.setattr(wandb, "init", init)
    writer = MirrorWriter(make_plan(tmp_path, mode="online", entity="team"),
                          report=lambda message: None)
    feed_trial(writer, "t_00000", [0.3], "complete")
    feed_trial(writer, "t_00001", [0.2], "complete")
    writer.handle({"kind": "close"})

    assert calls[0] == ("sweep", SWEEP_CONFIG, "proj", "team")
    assert calls[1:3] == [("init", "t_00000", "wb5weep1", "online"),
                          ("init", "t_00001", "wb5weep1", "online")]
    assert calls[3][1:3] == ("summary-abc123", None)  # the summary run: no sweep
    runs = runs_of(tmp_path)
    assert {r.run["sweep_id"] for r in runs.values()} == {"wb5weep1"}
    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    assert status["online_sweep_id"] == "wb5weep1" and status["mode"] == "online"


def test_sweep_that_cannot_be_created_falls_back_to_offline_runs(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise wandb.errors.CommError("could not reach api.wandb.ai")

    monkeypatch.setattr(wandb, "sweep", refuse)
    reports = []
    writer = MirrorWriter(make_plan(tmp_path, mode="online"), report=reports.append)
    feed_trial(writer, "t_00000", [0.3], "complete")
    writer.handle({"kind": "close"})
    assert len(reports) == 1 and "writing offline runs instead" in reports[0]
    run = runs_of(tmp_path)["t_00000"]
    assert "sweep_id" not in run.run and len(run.history) == 1
    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    assert status["mode"] == "offline" and "online_sweep_id" not in status


def test_a_failing_wandb_is_reported_once_and_never_raises(tmp_path, monkeypatch):
    def disk_full(**kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wandb, "init", disk_full)
    reports = []
    writer = MirrorWriter(make_plan(tmp_path), report=reports.append)
    feed_trial(writer, "t_00000", [0.3], "complete")
    feed_trial(writer, "t_00001", [0.3], "complete")
    writer.handle({"kind": "close"})
    assert len(reports) == 1 and "No space left on device" in reports[0]
    assert "sweep goes on" in reports[0]


def test_summary_run_id_is_new_per_sweep_and_kept_on_resume(tmp_path):
    from sweep.wandb_mirror.callback import summary_run_id

    first, second = summary_run_id(tmp_path), summary_run_id(tmp_path)
    assert first.startswith("summary-") and first != second
    writer = MirrorWriter(make_plan(tmp_path, summary_run_id=first), report=print)
    writer.save_status()
    assert summary_run_id(tmp_path) == first


def test_writer_process_never_inherits_a_sweep_id(tmp_path):
    """Only the writer ties runs to a sweep (online); a WANDB_SWEEP_ID left in the shell
    would tie offline runs to a sweep the server does not hold."""
    env = writer_env(make_plan(tmp_path), {"WANDB_SWEEP_ID": "stray1", "PATH": "/bin"})
    assert "WANDB_SWEEP_ID" not in env and env["WANDB_MODE"] == "offline"


def test_writer_process_with_an_unwritable_folder_reports_one_line(tmp_path, capfd):
    """The real logging process: its W&B folder is a file, so every write fails."""
    (tmp_path / "wandb").write_text("not a folder")
    channel = MirrorChannel(make_plan(tmp_path))
    channel.send({"kind": "trial_start", "trial_id": "t1", "run_id": "t1", "name": "exp-t1",
                  "config": {}})
    channel.send({"kind": "trial_start", "trial_id": "t2", "run_id": "t2", "name": "exp-t2",
                  "config": {}})
    channel.send({"kind": "close"})
    assert channel.close(timeout=60)
    lines = [line for line in capfd.readouterr().err.splitlines() if "W&B" in line]
    assert len(lines) == 1 and lines[0].startswith("W&B mirror stopped")


def test_writer_process_drains_everything_before_close_returns(tmp_path):
    channel = MirrorChannel(make_plan(tmp_path))
    for trial in range(3):
        channel.send({"kind": "trial_start", "trial_id": f"t{trial}", "run_id": f"t{trial}",
                      "name": f"exp-t{trial}", "config": {}})
        for epoch in range(1, 6):
            channel.send({"kind": "result", "trial_id": f"t{trial}", "step": epoch,
                          "row": {"epoch": epoch, "val_dice": epoch / 10}, "image": None})
        channel.send({"kind": "trial_end", "trial_id": f"t{trial}", "state": "complete"})
    channel.send({"kind": "close"})
    assert channel.close(timeout=60)
    runs = runs_of(tmp_path)
    assert all(len(run.history) == 5 and run.exit_code == 0 for run in runs.values())
    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    assert 0 < status["writer_cpu_s"] < 60  # the whole mirror's CPU time, for the benchmarks


@pytest.mark.parametrize("state", ["complete", "infeasible"])
def test_exit_code_follows_state(tmp_path, state):
    writer = MirrorWriter(make_plan(tmp_path), report=lambda message: None)
    feed_trial(writer, "t", [0.1], state)
    writer.handle({"kind": "close"})
    assert runs_of(tmp_path)["t"].exit_code == (1 if state == "infeasible" else 0)


def test_writer_process_that_dies_is_reported_once_and_never_blocks(tmp_path, caplog):
    channel = MirrorChannel(make_plan(tmp_path))
    channel.process.kill()
    channel.process.wait()
    for epoch in range(1, 200):
        channel.send({"kind": "result", "trial_id": "t", "step": epoch, "row": {}, "image": None})
    assert channel.close(timeout=10)
    warnings = [r.getMessage() for r in caplog.records if "W&B mirror" in r.getMessage()]
    assert len(warnings) == 1 and "writer process exited" in warnings[0]


def test_a_resumed_trial_continues_its_run_and_a_lost_one_ends_failed(tmp_path):
    """Ctrl-C, then `resume`: the run left open continues in a second folder (same id) from
    the next epoch and ends with the trial's verdict; a trial the resume lost (failed in
    trial_status.json) is failed in W&B too. One verdict everywhere."""
    def start(writer, trial_id):
        writer.handle({"kind": "trial_start", "trial_id": trial_id, "run_id": trial_id,
                       "name": f"exp-{trial_id}", "config": {}})

    def result(writer, trial_id, epoch, dice):
        writer.handle({"kind": "result", "trial_id": trial_id, "step": epoch,
                       "row": {"epoch": epoch, "val_dice": dice}, "image": None})

    first = MirrorWriter(make_plan(tmp_path), report=lambda message: None)
    for trial_id in ("kept", "lost"):
        start(first, trial_id)
        result(first, trial_id, 1, 0.7)
    (tmp_path / "tune" / "kept").mkdir(parents=True)  # Ray's row of that epoch
    (tmp_path / "tune" / "kept" / "result.json").write_text('{"epoch": 1, "val_dice": 0.7}\n')
    first.handle({"kind": "close"})  # a clean stop with both trials unfinished
    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    assert {e["state"] for e in status["runs"].values()} == {"running"}

    (tmp_path / "trial_status.json").write_text(json.dumps({
        "kept": {"status": "complete", "reason": "trained all 3 epochs"},
        "lost": {"status": "failed", "reason": "lost: the driver stopped before Ray recorded"}}))
    second = MirrorWriter(make_plan(tmp_path), report=lambda message: None)
    start(second, "kept")
    result(second, "kept", 1, 0.9)  # an epoch the first folder holds: not logged twice
    result(second, "kept", 2, 0.5)
    result(second, "kept", 3, 0.6)
    second.handle({"kind": "trial_end", "trial_id": "kept", "state": "complete", "reason": "ok"})
    second.handle({"kind": "close"})

    status = json.loads((tmp_path / "wandb" / "mirror.json").read_text())
    kept, lost = status["runs"]["kept"], status["runs"]["lost"]
    assert kept["state"] == "complete" and len(kept["dirs"]) == 2
    continued = read_run(tmp_path / kept["dirs"][1])
    assert [h["epoch"] for h in continued.history] == [2, 3]
    assert continued.summary["state"] == "complete" and continued.exit_code == 0
    assert continued.summary["best/val_dice"] == 0.7  # epoch 1 counts: read from Ray's rows
    assert lost["state"] == "failed" and len(lost["dirs"]) == 2
    settled = read_run(tmp_path / lost["dirs"][1])
    assert settled.summary["state"] == "failed" and settled.exit_code == 1


def test_an_error_is_described_in_one_line_without_the_api_key(monkeypatch):
    """Scrubbed before the cut: a key across the 200th character never leaks half of itself."""
    key = "leaky-key-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", key)
    error = PermissionError("x" * 170 + f"\nkey {key} is not valid")
    line = described(error)
    assert "\n" not in line and line.startswith("PermissionError: xxx") and len(line) == 200
    assert key[:5] not in line and "***" in line
