"""`wandb-sync`: the upload and the sweep creation are replaced; what they are given is real
(the offline runs' own folders, read back with `wandb leet inspect`)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

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
    feed_trial(writer, "t_00000", [0.2, 0.4], "complete")
    feed_trial(writer, "t_00001", [0.1], "pruned")
    writer.handle({"kind": "close"})
    # As the writer process does before it exits: wandb-core stops, so it appends nothing more
    # to the runs' logs while a test compares the folders before and after a sync.
    writer.wandb.teardown()
    return tmp_path


def mirror_status(run_dir: Path) -> dict:
    return json.loads((run_dir / "wandb" / "mirror.json").read_text())


def snapshot(run_dir: Path) -> dict:
    """Every file under the run directory: size, time and bytes."""
    return {p.relative_to(run_dir): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in run_dir.rglob("*") if p.is_file()}


@pytest.fixture
def fake_wandb_api(monkeypatch):
    """Replaces `wandb sync` and `wandb.sweep`; records what they were given."""
    seen = {}
    real_run = subprocess.run  # `wandb leet inspect` in the tests still runs for real

    def run(command, **kwargs):
        if command[1:2] != ["sync"]:
            return real_run(command, **kwargs)
        seen["command"] = command
        return subprocess.CompletedProcess(command, 0, "", "")

    def create_sweep(config, project=None, entity=None, prior_runs=None):
        seen["sweep"] = dict(config=config, project=project, entity=entity,
                             prior_runs=prior_runs)
        return "wb5weep1"

    monkeypatch.setattr(sync.subprocess, "run", run)
    monkeypatch.setattr(wandb, "sweep", create_sweep)
    monkeypatch.setenv("WANDB_API_KEY", "fake-key-never-used")
    return seen


def test_offline_runs_carry_no_sweep_id(offline_sweep):
    status = mirror_status(offline_sweep)
    folders = [d for entry in status["runs"].values() for d in entry["dirs"]]
    folders.append(status["summary_run"]["dir"])
    runs = [read_run(offline_sweep / folder).run for folder in folders]
    assert len(runs) == 3 and all("sweep_id" not in run for run in runs)
    assert {run["run_group"] for run in runs} == {"exp"}  # tied by the experiment's name
    assert not {"sweep_id", "local_sweep_id"} & set(status)


def test_sync_uploads_the_run_folders_as_they_are_then_creates_the_sweep(
        offline_sweep, fake_wandb_api):
    before = snapshot(offline_sweep)
    assert main(["wandb-sync", str(offline_sweep)]) == 0

    status = mirror_status(offline_sweep)
    command = fake_wandb_api["command"]
    assert command[1:6] == ["sync", "--project", "proj", "--entity", "team"]
    # The original folders, trials first (in mirror.json's order), then the summary run.
    assert command[6:] == [str(offline_sweep / d) for entry in status["runs"].values()
                           for d in entry["dirs"]] + [
        str(offline_sweep / status["summary_run"]["dir"])]
    assert fake_wandb_api["sweep"] == dict(
        config=yaml.safe_load((offline_sweep / "wandb_sweep.yaml").read_text()),
        project="proj", entity="team", prior_runs=["t_00000", "t_00001"])
    assert status["synced"] == {"sweep_id": "wb5weep1", "prior_runs": ["t_00000", "t_00001"],
                                "project": "proj", "entity": "team"}
    # Nothing copied or rewritten: only mirror.json changed (it records the upload).
    after = snapshot(offline_sweep)
    assert {path for path in before.keys() | after.keys()
            if before.get(path) != after.get(path)} == {Path("wandb/mirror.json")}


def test_second_sync_refuses_without_force(offline_sweep, fake_wandb_api, capsys):
    assert main(["wandb-sync", str(offline_sweep)]) == 0
    assert main(["wandb-sync", str(offline_sweep)]) == 2
    assert "already uploaded to W&B sweep wb5weep1" in capsys.readouterr().err
    assert "--include-synced" not in fake_wandb_api["command"]
    # The folders are the originals, which `wandb sync` marks as synced: --force includes them.
    assert main(["wandb-sync", str(offline_sweep), "--force"]) == 0
    assert fake_wandb_api["command"][6] == "--include-synced"


def test_failed_upload_is_one_line_and_creates_no_sweep(offline_sweep, fake_wandb_api,
                                                        monkeypatch, capsys):
    monkeypatch.setattr(sync.subprocess, "run", lambda command, **kw: subprocess.
                        CompletedProcess(command, 1, "", "wandb: ERROR api key not valid\n"))
    assert main(["wandb-sync", str(offline_sweep)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: wandb sync failed (exit 1): wandb: ERROR api key not valid"
    assert "sweep" not in fake_wandb_api


def test_without_a_key_sync_says_how_to_log_in(offline_sweep, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(["wandb-sync", str(offline_sweep)]) == 2
    assert "no W&B API key: run `wandb login`" in capsys.readouterr().err


def test_dry_run_needs_no_key_uploads_nothing_and_writes_nothing(offline_sweep, monkeypatch,
                                                                 caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)

    def no_upload(*args, **kwargs):
        raise AssertionError("a dry run ran a command")

    monkeypatch.setattr(sync.subprocess, "run", no_upload)
    monkeypatch.setattr(wandb, "sweep", no_upload)
    before = snapshot(offline_sweep)
    caplog.set_level("INFO")
    assert main(["wandb-sync", str(offline_sweep), "--dry-run"]) == 0
    assert "would upload 2 trial runs (t_00000, t_00001)" in caplog.text
    status = mirror_status(offline_sweep)
    assert str(offline_sweep / status["runs"]["t_00000"]["dirs"][0]) in caplog.text
    assert snapshot(offline_sweep) == before


def test_runs_of_an_earlier_mirror_with_a_local_sweep_id_are_refused(offline_sweep,
                                                                     fake_wandb_api, capsys):
    status = mirror_status(offline_sweep)
    (offline_sweep / "wandb" / "mirror.json").write_text(
        json.dumps({**status, "local_sweep_id": "local123"}))
    assert main(["wandb-sync", str(offline_sweep)]) == 2
    assert "carry a local sweep id (local123)" in capsys.readouterr().err
    assert "command" not in fake_wandb_api


def test_a_missing_run_folder_is_a_one_line_error(offline_sweep, fake_wandb_api, capsys):
    status = mirror_status(offline_sweep)
    for log in (offline_sweep / status["runs"]["t_00001"]["dirs"][0]).glob("*.wandb"):
        log.unlink()
    assert main(["wandb-sync", str(offline_sweep)]) == 2
    assert "no W&B run in" in capsys.readouterr().err and "command" not in fake_wandb_api


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
