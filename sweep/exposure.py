"""What a sweep's own (local) Ray leaves open, kept to what Ray 2.60 allows (README "Exposure").

Measured on ray 2.60.0 (tests/test_exposure_ports.py and tests/test_faults.py check it):
- By default a local ``ray.init`` binds its gRPC servers (GCS, raylet, workers, agents) to all
  interfaces and its dashboard agent serves Prometheus metrics, without the token, on all
  interfaces. ``127.0.0.1`` as the node address is turned into the machine's own address
  (``services.resolve_ip_for_localhost``) unless ``ray_constants.ENABLE_RAY_CLUSTER`` is false
  (env ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ray is imported): then the node address
  is 127.0.0.1, and every server of the node binds to loopback.
- ``RAY_enable_metrics_collection=0`` (a RayConfig flag every Ray process reads from its
  environment) turns the metrics agent off. Two Prometheus servers stay, which Ray 2.60 starts
  whatever that flag says, on fixed ports, bound to 127.0.0.1 when the node address is loopback:
  the autoscaler monitor's (44217: node counts, session name) and the dashboard head's (44227:
  its processes' pids, CPU and memory, API request counts). Neither takes the token; what they
  tell is what ``ps`` tells any local user. Nothing in ray.init turns them off.
- `dashboard start` runs ``ray start --head --node-ip-address=127.0.0.1`` with the same
  settings (``loopback_head_env``), so the head is loopback only too.
- Token auth covers the dashboard's HTTP API and Ray's gRPC services; Ray writes
  ``~/.ray/auth_token`` with the default umask (0644), so we write it first, 0600.
- Ray's processes die with the driver when it exits; after a SIGKILL the dashboard and
  runtime-env agents lived on 47-100 s (orphaned when the raylet died with the driver, and named
  ``ray::DashboardAgent``, not by their session), so a small reaper process ends them.
"""
from __future__ import annotations

import logging
import os
import secrets
import stat
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node address 127.0.0.1: servers on loopback
    "RAY_enable_metrics_collection": "0",  # no Prometheus endpoint (it has no auth)
}
_reaper: subprocess.Popen | None = None


def token_file() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def ensure_private_token(create: bool = True) -> Path | None:
    """The token file, created 0600 before Ray would create it 0644 (same format as Ray's own:
    64 hex digits); an existing one readable by others is narrowed to 0600. Nothing is done
    when the token comes from RAY_AUTH_TOKEN or the user turned auth off. ``create=False``
    (joining a cluster): only narrow, since a new token file would turn auth on for the join."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_MODE", "").lower() == \
            "disabled":
        return None
    path = token_file()
    if path.exists():
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)
            log.info("narrowed %s to mode 0600 (it held Ray's token readable by others)", path)
        return path
    if not create:
        return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another sweep made it meanwhile
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path


def prepare_local_ray() -> None:
    """Before a local ``ray.init``: loopback only, metrics off, token file 0600. A variable the
    user set wins (e.g. RAY_enable_metrics_collection=1 to scrape metrics on purpose)."""
    keep_on_loopback()
    ensure_private_token()


def keep_on_loopback() -> None:
    """This process's Ray (a local one, or a driver joining the loopback head of `dashboard
    start`) takes 127.0.0.1 as its node address, and starts no metrics agent."""
    for name, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(name, value)
    # ray_constants read the variable when ray was imported (this module may come later).
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] != "0"


def loopback_head_env(environ=os.environ) -> dict:
    """The environment of `dashboard start`'s `ray start --head`: the same settings as a local
    sweep's Ray (the user's own values win), and token auth."""
    return {**LOCAL_RAY_ENV, **environ, "RAY_AUTH_MODE": "token"}


# ---- the reaper: no Ray process of ours outlives a killed driver -----------------------------
REAPER = r"""
import os, signal, sys, time
session, driver = sys.argv[1], int(sys.argv[2])
sys.stdin.buffer.read()  # EOF: the driver is gone (or done with Ray), however it ended
time.sleep(1.0)  # Ray's own shutdown goes first
def of_session(pid):
    # Ray's agents write their title (ray::DashboardAgent) over their command line, but every
    # Ray process keeps its log files open for writing in the session's folder (a reader, such
    # as `tail -f` of a log, is not Ray's).
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if session.encode() in handle.read():
                return True
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if f"/{session}/" in os.readlink(f"/proc/{pid}/fd/{name}"):
                with open(f"/proc/{pid}/fdinfo/{name}") as info:
                    flags = next(line for line in info if line.startswith("flags:"))
                if int(flags.split()[1], 8) & (os.O_WRONLY | os.O_RDWR):
                    return True
        except (OSError, StopIteration, ValueError):
            pass
    return False
def ours():
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        if pid not in (os.getpid(), driver) and of_session(pid):
            yield pid
for sig in (signal.SIGTERM, signal.SIGKILL):
    for pid in list(ours()):
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    time.sleep(2.0)
"""


def start_reaper(session_dir: str) -> None:
    """A process that waits for this driver to end, then ends every process of its Ray session
    (session names are unique: each process names its folder on its command line or writes a
    log file in it; the driver, alive after a plain ray.shutdown, is spared). Its
    stdin is a pipe only the driver holds (Python's fds are not inherited), so the kernel
    closes it when the driver dies, even by SIGKILL."""
    global _reaper
    if not Path("/proc").is_dir() or not session_dir:
        return
    stop_reaper()
    _reaper = subprocess.Popen([sys.executable, "-c", REAPER, Path(session_dir).name,
                                str(os.getpid())],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)


def stop_reaper() -> None:
    """After ray.shutdown: let the reaper sweep up (normally nothing) and exit."""
    global _reaper
    if _reaper is not None:
        _reaper.stdin.close()
        threading.Thread(target=_reaper.wait, daemon=True).start()  # no zombie left behind
        _reaper = None
