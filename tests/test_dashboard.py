"""`make dashboard`: a Ray head whose dashboard listens on 127.0.0.1 with token auth on. The API
answers with the token and refuses without it (401) or with a wrong one (403); sweeps started
later find the head; `make dashboard-stop` stops exactly it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from sweep import dashboard

# A driver that imported ray before it joins (in its own process: this one may hold the tests'
# Ray): Ray has read RAY_AUTH_MODE already, so only re-reading Ray's config turns token auth on.
JOIN = """
import ray
from sweep.dashboard import connect
connection = connect()
print(connection.address, ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
"""

# What `python -m sweep run/resume/confirm` does: RAY_AUTH_MODE=token in the environment before
# anything imports ray, Ray's public switch; the private re-read of Ray's config must not run.
JOIN_PUBLIC = """
from sweep import dashboard
def private_call_used():
    raise AssertionError("the private Ray call was used")
dashboard._reread_ray_config = private_call_used
dashboard.prepare_to_join_head()
import ray
connection = dashboard.connect()
print(connection.address, ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
"""


# A sweep's own Ray (no head, no RAY_ADDRESS): start it as sweep/ray_session.py's start_ray does,
# ask its dashboard's API without and with the token from $HOME/.ray/auth_token, shut it down.
OWN_RAY = """
import json, time
from sweep import dashboard
from sweep.ray_session import stop_ray
connection = dashboard.connect()
try:
    url = connection.dashboard_url
    deadline = time.monotonic() + 20  # the dashboard's HTTP server comes up after ray.init
    while dashboard.api_status(url, None) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    token = dashboard.token_path().read_text().strip()
    print(json.dumps({"address": connection.address, "url": url,
                      "no_token": dashboard.api_status(url, None),
                      "token": dashboard.api_status(url, token)}))
finally:
    stop_ray(connection)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dashboard_head_needs_the_token_and_stops_cleanly():
    # Fresh ports: another head (a developer's own `make dashboard`) may hold the defaults.
    port, dashboard_port = free_port(), free_port()
    head = dashboard.start_head(port, dashboard_port, extra_args=(
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=1"))
    try:
        url = head["dashboard_url"]
        assert url == f"http://127.0.0.1:{dashboard_port}"
        token = dashboard.token_path().read_text().strip()
        assert dashboard.api_status(url, token) == 200
        assert dashboard.api_status(url, None) == 401
        assert dashboard.api_status(url, "not-the-token") == 403
        # Sweeps started now join this head rather than starting their own Ray.
        assert dashboard.live_head_address() == head["address"] == f"127.0.0.1:{port}"
        # The head is known by its pid, start time and command line (a reused pid is not it).
        saved = json.loads(dashboard.head_state_path().read_text())
        assert {"start", "--head", f"--port={port}"} <= set(saved["cmdline"])
        assert saved["create_time"] > 0
        env = {key: value for key, value in os.environ.items()
               if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
        for script in (JOIN_PUBLIC, JOIN):
            try:
                joined = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                        text=True, timeout=90, env=env)
            except subprocess.TimeoutExpired as error:
                pytest.fail(f"joining the head hung: {str(error.stderr)[-2000:]}")
            assert joined.stdout.split() == [head["address"], str(port)], joined.stderr[-2000:]
        assert dashboard.start_head() == head  # a second start finds the running head
    finally:
        stopped = dashboard.stop_head()
    assert stopped and not dashboard.group_alive(head["pid"])
    assert dashboard.live_head_address() is None
    assert dashboard.api_status(url, token) is None  # nothing listens any more
    assert not dashboard.stop_head()  # nothing left to stop


def test_a_sweeps_own_ray_dashboard_needs_the_token():
    # Its own HOME and Ray folders: no `make dashboard` head to join, a token of its own. Short
    # path (beside conftest's): Ray's unix sockets must stay under 107 characters.
    root = tempfile.mkdtemp(prefix="o", dir=os.path.dirname(os.environ["RAY_TMPDIR"]))
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    for name in ("HOME", "TMPDIR", "RAY_TMPDIR"):
        env[name] = os.path.join(root, name[0].lower())
        os.makedirs(env[name])
    try:
        child = subprocess.run([sys.executable, "-c", OWN_RAY], capture_output=True, text=True,
                               timeout=90, env=env)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the sweep's own Ray hung: {str(error.stderr)[-2000:]}")
    finally:
        token_file = os.path.join(env["HOME"], ".ray", "auth_token")
        had_token = os.path.exists(token_file) and open(token_file).read().strip() != ""
        shutil.rmtree(root, ignore_errors=True)
    assert child.returncode == 0, child.stderr[-2000:]
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    assert seen["address"] == "local" and had_token
    assert seen["url"].startswith("http://127.0.0.1:")
    assert (seen["no_token"], seen["token"]) == (401, 200)


def sleeper() -> subprocess.Popen:
    """An unrelated live process leading its own process group, as the head does."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def write_state(**state) -> None:
    dashboard.head_state_path().parent.mkdir(parents=True, exist_ok=True)
    dashboard.head_state_path().write_text(json.dumps(
        {"address": "127.0.0.1:1", "dashboard_url": "http://127.0.0.1:2", **state}))


def test_a_reused_pid_is_no_head_and_is_never_signalled(capsys):
    from sweep.__main__ import main

    other = sleeper()
    try:
        real = dashboard.process_identity(other.pid)
        ray_line = [dashboard.ray_executable(), "start", "--head", "--block"]
        for state in (
                {"pid": other.pid},  # no identity recorded: cannot be trusted
                {"pid": other.pid, "create_time": real["create_time"] - 5, "cmdline": ray_line},
                {"pid": other.pid, "create_time": real["create_time"], "cmdline": ray_line},
        ):
            write_state(**state)
            assert dashboard.read_head_state() is None
            assert not dashboard.head_state_path().exists()  # that head is gone: forgotten
            write_state(**state)
            assert main(["dashboard", "status"]) == 0
            assert capsys.readouterr().out.strip() == "no Ray head running"
            assert not dashboard.head_state_path().exists()
            write_state(**state)
            assert dashboard.stop_head() is False
            assert other.poll() is None, "an unrelated process was signalled"
            assert dashboard.live_head_address() is None
    finally:
        other.kill()
        other.wait()


def test_a_dead_head_pid_is_cleaned_up():
    gone = sleeper()
    identity = dashboard.process_identity(gone.pid)
    gone.kill()
    gone.wait()
    write_state(pid=gone.pid, create_time=identity["create_time"], cmdline=identity["cmdline"])
    assert dashboard.read_head_state() is None
    assert not dashboard.head_state_path().exists()
    write_state(pid=gone.pid, create_time=identity["create_time"], cmdline=identity["cmdline"])
    assert dashboard.stop_head() is False and not dashboard.head_state_path().exists()
    dashboard.head_state_path().write_text("{not json")
    assert dashboard.read_head_state() is None and not dashboard.head_state_path().exists()


def test_dashboard_start_on_a_taken_port_is_a_one_line_error():
    from training.settings import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        started = subprocess.run(
            [sys.executable, "-m", "sweep", "dashboard", "start", f"--port={busy}",
             f"--dashboard-port={free_port()}"], capture_output=True, text=True, timeout=60)
        assert started.returncode == 2, started.stderr[-2000:]
        assert started.stderr.strip() == (
            f"error: --port={busy}: something else already uses that port (Address already "
            f"in use); pick another"), started.stderr[-2000:]
        with pytest.raises(ConfigError, match=f"--dashboard-port={busy}: something else"):
            dashboard.start_head(free_port(), busy)
    assert dashboard.read_head_state() is None  # no Ray was started
