"""Where a sweep's Ray runs, and the Ray dashboard.

A sweep joins ``RAY_ADDRESS`` if set, else the head node ``make dashboard`` left running, else
starts a local Ray of its own. Token authentication stays on everywhere: the dashboard listens on
127.0.0.1 and its API answers 401 without ``Authorization: Bearer <token>``; the token lives in
``~/.ray/auth_token`` (``ray get-auth-token`` prints it). The token itself is never logged.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sweep import exposure
from training.settings import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORT, DEFAULT_DASHBOARD_PORT = 6379, 8265


@dataclass
class RayConnection:
    address: str  # "local", an existing session, or the cluster joined
    dashboard_url: str | None
    owned: bool  # this process called ray.init, so it shuts Ray down at the end


def token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def head_state_path() -> Path:
    return Path.home() / ".crack-sweep" / "ray-head.json"


def auth_help(url: str) -> str:
    return (f"Ray dashboard: {url} (token auth: paste the token the page asks for; "
            f"`ray get-auth-token` prints it, from {token_path()}. API: curl -H "
            f"\"Authorization: Bearer $(cat {token_path()})\" {url}/api/version)")


# Ray Tune copies these from the driver's environment into every trial's runtime_env (ray/tune/
# execution/class_cache.py), and Ray's runtime_env agent logs each runtime_env it creates at INFO
# (logs/runtime_env_agent.log, on every node): a secret in them would land in a file.
SECRETS_TUNE_FORWARDS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def keep_secrets_out_of_ray_logs(environ=os.environ) -> None:
    """With such a secret in the environment, Ray's own components log at WARNING (read by the
    nodes a driver or `ray start` launches; nodes of a cluster started elsewhere need it too)."""
    if any(environ.get(name) for name in SECRETS_TUNE_FORWARDS):
        environ.setdefault("RAY_LOGGER_LEVEL", "warning")


def connect(include_dashboard: bool = True) -> RayConnection:
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return RayConnection("existing session", None, owned=False)
    keep_secrets_out_of_ray_logs()
    head = None if os.environ.get("RAY_ADDRESS") else read_head_state()
    if head:
        # Before `import ray` below: where this process has not imported Ray yet, the public
        # switch (RAY_AUTH_MODE in the environment) is all it takes.
        enable_token_auth()
    import ray

    exposure.ensure_private_token(create=False)  # an existing token file: 0600
    if os.environ.get("RAY_ADDRESS"):
        context, where = join(os.environ["RAY_ADDRESS"]), os.environ["RAY_ADDRESS"]
    elif head:
        exposure.keep_on_loopback()  # the head's node is 127.0.0.1: so must this driver's be
        # By address, not "auto": "auto" may pick any other Ray running on this machine.
        context, where = ray.init(address=head["address"], log_to_driver=False), head["address"]
    else:
        exposure.prepare_local_ray()  # loopback only, metrics off, token file 0600
        # address="local": never trip over a stale ray_current_cluster file from an old cluster.
        context = ray.init(address="local", include_dashboard=include_dashboard,
                           dashboard_host="127.0.0.1", log_to_driver=False)
        exposure.start_reaper(context.address_info.get("session_dir", ""))
        where = "local"
    # Ray 2.60 turns token auth on for a new local Ray (and when joining with a token at hand),
    # noting it in RAY_AUTH_MODE; it must be decided before Ray's config is read, so we only check.
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        log.warning("Ray token authentication is OFF (RAY_AUTH_MODE=%s)",
                    os.environ.get("RAY_AUTH_MODE", ""))
    url = context.dashboard_url or None
    if url and not url.startswith("http"):
        url = "http://" + url
    return RayConnection(where, url, owned=True)


def prepare_to_join_head() -> None:
    """Call before anything imports ray (the sweep commands do): if a driver started now will
    join the head of `make dashboard`, token auth through Ray's public switch alone."""
    if not os.environ.get("RAY_ADDRESS") and read_head_state():
        enable_token_auth()


def enable_token_auth() -> None:
    """Token auth for this driver before it joins our own head by address.

    Ray's public switch is ``RAY_AUTH_MODE=token`` in the environment (docs.ray.io/en/latest/
    ray-security/token-auth.html), and Ray 2.60 reads it once: when ``ray._raylet`` is imported
    (its C++ RayConfig), not at ``ray.init``. ``ray.init`` has no argument for it, rejects
    ``_system_config={"AUTH_MODE": ...}``, and turns it on by itself only for a cluster it
    discovers (``address`` None or "auto", ray/_private/worker.py ``maybe_enable_token_auth_if_
    token_available``), never for an address it is given. So: set the variable; where Ray was
    imported before (a driver that did ``import ray`` first), re-read Ray's config as Ray's
    own discovery path does, the one step with no public form."""
    already_read = "ray._raylet" in sys.modules
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return  # set before Ray read it, or by Ray itself after re-reading its config
    os.environ["RAY_AUTH_MODE"] = "token"
    if already_read:
        _reread_ray_config()


def _reread_ray_config() -> None:
    """The only private Ray call here (ray 2.60): ``_enable_token_auth`` sets RAY_AUTH_MODE and
    re-initialises the C++ RayConfig (``ray._raylet.Config.initialize("")``), as ray.init does
    for a cluster it discovers. Needed only when ray was imported before RAY_AUTH_MODE was set;
    the sweep commands call ``prepare_to_join_head`` first and never get here."""
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()


def join(address: str):
    import ray

    try:
        return ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError) as error:
        hint = ("" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else
                "; a cluster with token auth needs RAY_AUTH_MODE=token in the environment "
                "(and its token in ~/.ray/auth_token)")
        raise ConfigError(f"RAY_ADDRESS={address}: cannot join that Ray cluster "
                          f"({type(error).__name__}){hint}") from None


def describe(connection: RayConnection) -> str:
    import ray

    resources = ray.cluster_resources()
    what = (f"Ray: {connection.address}, {resources.get('CPU', 0):g} CPUs, "
            f"{resources.get('GPU', 0):g} GPUs")
    return what + ("\n" + auth_help(connection.dashboard_url) if connection.dashboard_url else "")


# ---- the head node of `make dashboard` ----------------------------------------------------------

def read_head_state() -> dict | None:
    """The head `start_head` left running, or None. A state file whose pid is dead, or is now
    some other process (pids are reused), is removed: that head is gone."""
    try:
        state = json.loads(head_state_path().read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        state = {}
    if isinstance(state, dict) and is_our_head(state):
        return state
    log.info("removing %s: its Ray head is gone", head_state_path())
    head_state_path().unlink(missing_ok=True)
    return None


def live_head_address() -> str | None:
    state = read_head_state()
    return state["address"] if state else None


def process_identity(pid: int) -> dict | None:
    """What tells this process from a later one given the same pid: its start time and command
    line (psutil), and its process group (we only signal a group the head leads)."""
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return {"create_time": process.create_time(), "cmdline": process.cmdline(),
                    "pgid": os.getpgid(pid)}
    except (psutil.Error, OSError, ValueError, TypeError):
        return None


def is_our_head(state: dict) -> bool:
    """The pid in the state file is still the process `start_head` started, and it still leads
    its own process group. A state file without the identity (older format) never matches."""
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0 or "create_time" not in state:
        return False
    now = process_identity(pid)
    return (now is not None and now["pgid"] == pid and now["cmdline"] == state.get("cmdline")
            and abs(now["create_time"] - state["create_time"]) < 0.01)


def start_head(port: int = DEFAULT_PORT, dashboard_port: int = DEFAULT_DASHBOARD_PORT,
               extra_args: tuple[str, ...] = (), timeout_s: float = 90) -> dict:
    """Start a Ray head on 127.0.0.1 (every port loopback, README "exposure") with the dashboard
    and token auth; sweeps on this machine then join it.
    ``ray start --block`` in its own session: stopping that one process stops the node."""
    state = read_head_state()
    if state:
        return state
    check_ports_free({"--port": port, "--dashboard-port": dashboard_port,
                      **ports_in(extra_args)})
    state_dir = head_state_path().parent
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "ray-head.log"
    ensure_token()
    # Node address 127.0.0.1 (kept so by loopback_head_env): every server of the head listens
    # on loopback only; a node on another machine cannot join it (`ray up` makes clusters).
    command = [ray_executable(), "start", "--head", "--block", f"--port={port}",
               "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={dashboard_port}", "--include-dashboard=true",
               "--disable-usage-stats", *extra_args]
    env = exposure.loopback_head_env()
    keep_secrets_out_of_ray_logs(env)
    with log_file.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{dashboard_port}"
    state = {"pid": process.pid, "address": f"127.0.0.1:{port}", "dashboard_url": url,
             "log": str(log_file)}
    wait_until_ready(process, url, log_file, timeout_s)
    # Read once the head answers, not when Popen returns: Popen returns when exec closes its
    # pipe, which may be before the kernel has set the new command line. The likely cause of
    # one `make test` failure beside a benchmark: the head never matched its own state.
    identity = process_identity(process.pid)
    if identity:
        state.update(create_time=identity["create_time"], cmdline=identity["cmdline"])
    head_state_path().write_text(json.dumps(state, indent=1))
    return state


def ports_in(args: tuple[str, ...]) -> dict[str, int]:
    """The ``--...-port=N`` options among extra ``ray start`` arguments."""
    found = {}
    for arg in args:
        name, _, value = arg.partition("=")
        if name.startswith("--") and name.endswith("-port") and value.isdigit():
            found[name] = int(value)
    return found


def check_ports_free(ports: dict[str, int]) -> None:
    """A port something else listens on is the user's to change: one line, before Ray starts."""
    for option, port in ports.items():
        with socket.socket() as probe:
            # SO_REUSEADDR: a port in TIME_WAIT (a head just stopped) is free; a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", port))
            except OSError as error:
                raise ConfigError(f"{option}={port}: something else already uses that port "
                                  f"({error.strerror}); pick another") from None


def ensure_token() -> None:
    """`ray start` with token auth needs the token to exist; Ray's own command makes one
    (it prints the token, so its output goes nowhere)."""
    exposure.ensure_private_token()  # 0600, before Ray's own command would make it 0644
    if not token_path().exists():
        subprocess.run([ray_executable(), "get-auth-token", "--generate"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def wait_until_ready(process: subprocess.Popen, url: str, log_file: Path, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-3:])
            raise ConfigError(f"ray start exited with {process.returncode} (log: {log_file}): "
                              f"{tail}")
        if token_path().exists() and api_status(url, token_path().read_text().strip()) == 200:
            return
        time.sleep(1)
    stop_process_group(process.pid)
    raise RuntimeError(f"the Ray dashboard did not answer at {url} within {timeout_s:.0f} s "
                       f"(log: {log_file})")


def api_status(url: str, token: str | None, path: str = "/api/version") -> int | None:
    """HTTP status of a dashboard API call, with or without the bearer token."""
    request = urllib.request.Request(url + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def stop_head(timeout_s: float = 30) -> bool:
    """Stop the head ``start_head`` started (only it: never a global ``ray stop``). Its process
    group is signalled only while its pid is still that head (``read_head_state`` checks)."""
    state = read_head_state()
    head_state_path().unlink(missing_ok=True)
    if not state:
        return False
    stop_process_group(state["pid"], timeout_s)
    return True


def stop_process_group(pid: int, timeout_s: float = 30) -> None:
    # SIGINT lets `ray start --block` shut its node down cleanly; SIGKILL to the group if not.
    for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pid):
                return
            time.sleep(0.5)


def group_alive(pgid: int) -> bool:
    try:
        os.waitpid(pgid, os.WNOHANG)  # reap it if it is our own child (else it stays a zombie)
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
