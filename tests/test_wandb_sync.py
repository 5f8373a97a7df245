"""`wandb-sync`: the upload and the sweep creation are replaced; what they are given is real
(the offline runs' own folders, read back with `wandb leet inspect`)."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class Answers(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(404)  # any answer: the server is there
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(monkeypatch):
    """WANDB_BASE_URL: an HTTP server on this machine that answers (wandb-sync checks first
    that the server answers at all)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("WANDB_BASE_URL", url)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_wandb_api(monkeypatch, local_server):
    """Replaces `wandb sync` and `wandb.sweep`; records what they were given."""
    seen = {}
    real_run = subprocess.run  # `wandb leet inspect` in the tests still runs for real

    def run(command, **kwargs):
        if command[1:2] != ["sync"]:
            return real_run(command, **kwargs)
        seen["command"], seen["env"] = command, kwargs.get("env")
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


# ---- issue 24 item 12: without a network, a progress line and one line in bounded time -----------
KEY = "fake-key-never-used"  # fake_wandb_api's


def test_sync_says_where_it_uploads_and_bounds_each_request(offline_sweep, fake_wandb_api,
                                                            local_server, caplog):
    caplog.set_level("INFO")
    assert main(["wandb-sync", str(offline_sweep), "--timeout-s", "5"]) == 0
    assert f"syncing 3 runs to {local_server}" in caplog.text  # 2 trials and the summary run
    assert fake_wandb_api["env"]["WANDB_HTTP_TIMEOUT"] == "5"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_nothing_listens_on_is_one_line_naming_it(offline_sweep, fake_wandb_api,
                                                           monkeypatch, capsys, caplog):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("WANDB_BASE_URL", url)
    caplog.set_level("INFO")
    assert main(["wandb-sync", str(offline_sweep)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"syncing 3 runs to {url}" in caplog.text
    assert err.startswith(f"error: cannot reach the W&B server {url} (WANDB_BASE_URL)"), err
    assert "\n" not in err and "nothing was uploaded" in err
    assert "command" not in fake_wandb_api and "sweep" not in fake_wandb_api
    assert KEY not in err + caplog.text


@pytest.fixture
def silent_server(monkeypatch):
    """WANDB_BASE_URL: a port that accepts connections (the kernel does, from its backlog) and
    never answers, as a server behind a stalled proxy or a dropping firewall."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", url)
        yield url


def test_a_server_that_never_answers_is_given_up_on_in_bounded_time(
        offline_sweep, fake_wandb_api, silent_server, capsys):
    start = time.monotonic()
    assert main(["wandb-sync", str(offline_sweep), "--timeout-s", "2"]) == 1
    assert time.monotonic() - start < 6  # loose: 3x the timeout
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach the W&B server {silent_server}"), err
    assert "no answer within 2 s" in err and "command" not in fake_wandb_api


def test_the_server_is_wandb_base_url_else_the_one_wandb_login_saved(tmp_path):
    settings = tmp_path / "settings"
    settings.write_text("[default]\nbase_url = https://wandb.example.org/\n")
    environ = {"WANDB_CONFIG_DIR": str(tmp_path)}
    assert sync.server_url(environ) == "https://wandb.example.org"
    assert sync.server_url({**environ, "WANDB_BASE_URL": "http://h:8080"}) == "http://h:8080"
    assert sync.server_url({"HOME": str(tmp_path)}) == wandb.Settings().base_url


def test_a_bad_timeout_is_one_line(offline_sweep, capsys):
    assert main(["wandb-sync", str(offline_sweep), "--timeout-s", "0"]) == 2
    assert "--timeout-s = 0.0 should be" in capsys.readouterr().err
