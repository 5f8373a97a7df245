"""`make dashboard`: a Ray head whose dashboard listens on 127.0.0.1 with token auth on. The API
answers with the token and refuses without it (401) or with a wrong one (403); sweeps started
later find the head; `make dashboard-stop` stops exactly it."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from sweep import dashboard

# What a sweep's driver does first (in its own process: this one may hold the tests' Ray).
JOIN = """
import ray
from sweep.dashboard import connect
connection = connect()
print(connection.address, ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
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
        try:
            joined = subprocess.run([sys.executable, "-c", JOIN], capture_output=True,
                                    text=True, timeout=90)
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
