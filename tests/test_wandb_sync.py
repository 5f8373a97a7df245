"""`wandb-sync`: the upload and the sweep creation are replaced; what they are given is real
(staged copies of offline runs, read back with `wandb leet inspect`)."""
from __future__ import annotations

import json
import subprocess

import pytest
import wandb
import yaml

from sweep.__main__ import main
from sweep.wandb_mirror import sync
from sweep.wandb_mirror.inspect import read_run
from sweep.wandb_mirror.sweep_config import write_sweep_yaml
from sweep.wandb_mirror.writer import MirrorWriter
from tests.test_wandb_writer import SWEEP_CONFIG, feed_trial, make_plan


@pytest.fixture
def offline_sweep(tmp_path):
    write_sweep_yaml(tmp_path / "wandb_sweep.yaml", SWEEP_CONFIG)
    writer = MirrorWriter(make_plan(tmp_path, entity="team"), report=lambda message: None)
    feed_trial(writer, "t_00000", [0.2, 0.4], "finished")
    feed_trial(writer, "t_00001", [0.1], "pruned")
    writer.handle({"kind": "close"})
    return tmp_path


@pytest.fixture
def fake_wandb_api(monkeypatch):
    """Replaces `wandb sync` and `wandb.sweep`; records what they were given."""
    seen = {}
    real_run = subprocess.run  # `wandb leet inspect` below still runs for real

    def run(command, **kwargs):
        if command[1:2] != ["sync"]:
            return real_run(command, **kwargs)
        staged = [arg for arg in command if "offline-run-" in arg]
        seen["command"] = command
        if seen.get("read_staged", True):  # they are gone once sync returns
            runs = [read_run(path).run for path in staged]
            seen["staged_runs"] = {run["run_id"]: run for run in runs}
        return subprocess.CompletedProcess(command, 0, "", "")

    def create_sweep(config, project=None, entity=None, prior_runs=None):
        seen["sweep"] = dict(config=config, project=project, entity=entity,
                             prior_runs=prior_runs)
        return "wb5weep1"

    monkeypatch.setattr(sync.subprocess, "run", run)
    monkeypatch.setattr(wandb, "sweep", create_sweep)
    monkeypatch.setenv("WANDB_API_KEY", "fake-key-never-used")
    return seen


def test_sync_uploads_copies_without_the_local_sweep_then_creates_the_sweep(
        offline_sweep, fake_wandb_api):
    assert main(["wandb-sync", str(offline_sweep)]) == 0

    command = fake_wandb_api["command"]
    assert command[1:6] == ["sync", "--project", "proj", "--entity", "team"]
    staged = fake_wandb_api["staged_runs"]
    assert set(staged) == {"t_00000", "t_00001", "summary-local123"}
    assert all("sweep_id" not in run for run in staged.values())
    assert fake_wandb_api["sweep"] == dict(
        config=yaml.safe_load((offline_sweep / "wandb_sweep.yaml").read_text()),
        project="proj", entity="team", prior_runs=["t_00000", "t_00001"])

    status = json.loads((offline_sweep / "wandb" / "mirror.json").read_text())
    assert status["synced"]["sweep_id"] == "wb5weep1"
    assert not (offline_sweep / "wandb" / "sync-staging").exists()
    # The local runs keep their tie to the local sweep id.
    original = read_run(offline_sweep / status["runs"]["t_00000"]["dirs"][0])
    assert original.run["sweep_id"] == "local123"


def test_second_sync_refuses_without_force(offline_sweep, fake_wandb_api, capsys):
    fake_wandb_api["read_staged"] = False
    assert main(["wandb-sync", str(offline_sweep)]) == 0
    assert main(["wandb-sync", str(offline_sweep)]) == 2
    assert "already uploaded to W&B sweep wb5weep1" in capsys.readouterr().err
    assert main(["wandb-sync", str(offline_sweep), "--force"]) == 0


def test_failed_upload_is_one_line_and_creates_no_sweep(offline_sweep, fake_wandb_api,
                                                        monkeypatch, capsys):
    monkeypatch.setattr(sync.subprocess, "run", lambda command, **kw: subprocess.
                        CompletedProcess(command, 1, "", "wandb: ERROR api key not valid\n"))
    # (nothing below reads runs back, so no real subprocess is needed any more)
    assert main(["wandb-sync", str(offline_sweep)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: wandb sync failed (exit 1): wandb: ERROR api key not valid"
    assert "sweep" not in fake_wandb_api


def test_without_a_key_sync_says_how_to_log_in(offline_sweep, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(["wandb-sync", str(offline_sweep)]) == 2
    assert "no W&B API key: run `wandb login`" in capsys.readouterr().err


def test_dry_run_needs_no_key_and_uploads_nothing(offline_sweep, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    caplog.set_level("INFO")
    assert main(["wandb-sync", str(offline_sweep), "--dry-run"]) == 0
    assert "would upload 2 trial runs (t_00000, t_00001)" in caplog.text
    assert not (offline_sweep / "wandb" / "sync-staging").exists()


def test_a_folder_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["wandb-sync", str(tmp_path)]) == 2
    assert "no W&B runs here" in capsys.readouterr().err


def test_view_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["wandb-view", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {tmp_path}: no W&B runs here "
                                               f"({tmp_path / 'wandb'} is missing)")


def test_upload_errors_never_echo_the_api_key(monkeypatch):
    """Both error paths quote W&B's own text; a key inside it is masked."""
    key = "leaky-key-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", key)
    failed = subprocess.CompletedProcess([], 1, "", f"wandb: ERROR bad key {key}\n")
    monkeypatch.setattr(sync.subprocess, "run", lambda command, **kwargs: failed)
    with pytest.raises(sync.SyncError) as upload_error:
        sync.upload(["wandb", "sync"])

    def refuse(*args, **kwargs):
        raise PermissionError(f"key {key} is not valid")

    monkeypatch.setattr(wandb, "sweep", refuse)
    plan = sync.SyncPlan(None, {"project": "p"}, {}, {"r1": []}, [])
    with pytest.raises(sync.SyncError) as sweep_error:
        sync.create_sweep(plan)
    for message in (str(upload_error.value), str(sweep_error.value)):
        assert key not in message and "***" in message
