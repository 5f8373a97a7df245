"""Every port a sweep's own Ray and `python -m sweep dashboard start` open (issue 24 item 9):
each listens on 127.0.0.1, answers /metrics without the token only where the exposure table
of docs/EXPOSURE.md says so (UNGUARDED below), and no process of the session outlives a killed
driver or a stopped head (the Ray agents rename themselves, so a reaper that looks for the
session name on command lines misses them)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import ray  # noqa: F401 - also puts Ray's own psutil on the path

from sweep import dashboard, exposure

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")

# docs/EXPOSURE.md's port table: the Prometheus servers that answer /metrics without the token
# (Ray 2.60 starts them whatever RAY_enable_metrics_collection says, on a fixed port, on
# 127.0.0.1 for a node whose address is loopback), by the script the process runs.
UNGUARDED = {"ray/autoscaler/_private/monitor.py": 44217, "ray/dashboard/dashboard.py": 44227}
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1")

DRIVER = """
import time, ray
from sweep import dashboard
connection = dashboard.connect(include_dashboard=True)
ray.get(ray.remote(lambda: 1).remote())
deadline = time.monotonic() + 60  # the dashboard's metrics server starts before its HTTP one
while dashboard.api_status(connection.dashboard_url, None) is None and time.monotonic() < deadline:
    time.sleep(0.5)
print(connection.dashboard_url, flush=True)
time.sleep(600)
"""


def family(pid: int) -> list:
    """A process and all its descendants, as psutil processes (their start times pin them)."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listening(processes: list) -> list[tuple[object, str, int]]:
    import psutil

    found = []
    for process in processes:
        try:
            found += [(process, c.laddr.ip, c.laddr.port) for c in
                      process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    return found


def metrics_status(port: int) -> int | str:
    """What GET /metrics without a token gets: an HTTP status, or the error of a non-HTTP
    (gRPC) port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except Exception as error:  # noqa: BLE001 - gRPC ports answer HTTP/1 with garbage
        return type(error).__name__


def unguarded_script(process, port: int) -> str | None:
    """The UNGUARDED entry this open /metrics port is, or None."""
    command = " ".join(process.cmdline())
    return next((script for script, fixed in UNGUARDED.items()
                 if script in command and port == fixed), None)


def check_ports(processes: list) -> None:
    sockets = listening(processes)
    assert sockets
    wide = [(p.pid, " ".join(p.cmdline())[:80], ip, port) for p, ip, port in sockets
            if ip not in LOOPBACK]
    assert not wide, f"listening beyond loopback: {wide}"
    open_metrics = [(p.pid, " ".join(p.cmdline())[:80], port) for p, _, port in sockets
                    if metrics_status(port) == 200 and not unguarded_script(p, port)]
    assert not open_metrics, f"/metrics answers without the token: {open_metrics}"


def gcs_answer_without_token(address: str) -> str:
    """The status code of a plain GCS call (the node list) made without the token."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), timeout=10)
        except grpc.RpcError as error:
            return error.code().name
    return "OK"


def left_alive(processes: list, timeout_s: float) -> list:
    """Those of ``processes`` still running (not zombies) after ``timeout_s``."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for process in processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.Error:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def kill_all(processes: list) -> None:
    import psutil

    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass


def test_a_local_sweeps_ports_are_loopback_guarded_and_end_with_its_killed_driver(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    for name in ("RAY_AUTH_MODE", "RAY_ADDRESS", *exposure.LOCAL_RAY_ENV):
        env.pop(name, None)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    processes = []
    try:
        assert driver.stdout.readline().startswith("http://127.0.0.1:")
        processes = family(driver.pid)[1:]
        check_ports(processes)
        gcs = [port for p, _, port in listening(processes) if "gcs_server" in p.name()]
        assert gcs and gcs_answer_without_token(f"127.0.0.1:{gcs[0]}") == "UNAUTHENTICATED"
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    left = left_alive(processes, timeout_s=20)
    kill_all(left)
    assert not left, f"outlived the killed driver: {left}"


def test_dashboard_start_opens_loopback_ports_only_and_stop_ends_them_all():
    from tests.test_dashboard import free_port

    head = dashboard.start_head(free_port(), free_port(), extra_args=(
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=1"))
    processes = []
    try:
        processes = family(head["pid"])
        check_ports(processes)
        # Ray's gRPC servers (GCS, raylet, workers, agents) take the token as HTTP does.
        assert gcs_answer_without_token(head["address"]) == "UNAUTHENTICATED"
    finally:
        assert dashboard.stop_head()
    left = left_alive(processes, timeout_s=20)
    kill_all(left)
    assert not left, f"outlived `dashboard stop`: {left}"
