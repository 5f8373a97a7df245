"""``wandb-sync``: upload a sweep's offline runs as they are, then create the W&B sweep that
holds them.

Offline runs carry no sweep id (they are tied by group, config and ``wandb/mirror.json``), so
``wandb sync --project P [--entity E] DIR...`` uploads the run folders unchanged; then
``wandb.sweep(config, project=..., entity=..., prior_runs=[run ids])`` creates the W&B sweep
with the uploaded trial runs attached.

Without a network `wandb sync` retries for ever and prints nothing, so the server is asked
first, once, for at most ``timeout_s``: an unreachable one is one line naming it.
"""
from __future__ import annotations

import configparser
import http.client
import json
import logging
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from sweep.rundir import MIRROR_FILE, WANDB_SWEEP_FILE, write_json
from sweep.wandb_mirror.settings import has_api_key
from sweep.wandb_mirror.writer import described, scrub
from training.errors import error_line
from training.settings import ConfigError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0  # per request: W&B's API answers in seconds when it is reachable


class SyncError(RuntimeError):
    """The upload itself failed (network, key, server); one line."""


@dataclass
class SyncPlan:
    run_dir: Path
    status: dict
    sweep_config: dict
    trial_runs: dict[str, list[Path]]  # W&B run id -> its local folders (2+ after a resume)
    other_runs: list[Path]  # the summary run: uploaded, not part of the sweep

    @property
    def folders(self) -> list[Path]:
        """Every run folder to upload, in order (a resumed trial's folders one after another)."""
        return [*(d for dirs in self.trial_runs.values() for d in dirs), *self.other_runs]

    @property
    def run_count(self) -> int:
        return len(self.trial_runs) + len(self.other_runs)


def plan_sync(run_dir: str | Path) -> SyncPlan:
    run_dir = Path(run_dir)
    status_path = run_dir / MIRROR_FILE
    if not status_path.is_file():
        raise ConfigError(f"{run_dir}: no W&B runs here ({status_path} is missing; was the "
                          "sweep run with wandb enabled?)")
    status = json.loads(status_path.read_text())
    if status.get("local_sweep_id"):
        raise ConfigError(f"{run_dir}: these runs were written by an earlier version of the "
                          f"mirror and carry a local sweep id ({status['local_sweep_id']}) that "
                          "W&B's server would refuse; run the sweep again to upload it")
    sweep_yaml = run_dir / WANDB_SWEEP_FILE
    if not sweep_yaml.is_file():
        raise ConfigError(f"{run_dir}: {sweep_yaml.name} is missing")
    offline = [e for e in status["runs"].values() if e.get("mode", "offline") == "offline"]
    if status["runs"] and not offline:
        raise ConfigError(f"{run_dir}: every run went to W&B online already (sweep "
                          f"{status.get('online_sweep_id')}); nothing to upload")
    # A run still marked running belongs to a sweep in progress: upload it once it has ended.
    trial_runs = {e["run_id"]: [run_dir / d for d in e["dirs"]] for e in offline
                  if e["state"] != "running"}
    other = [run_dir / status["summary_run"]["dir"]] if status.get("summary_run") else []
    plan = SyncPlan(run_dir, status, yaml.safe_load(sweep_yaml.read_text()), trial_runs, other)
    missing = [str(d) for d in plan.folders if not any(d.glob("*.wandb"))]
    if missing:
        raise ConfigError(f"{run_dir}: no W&B run in {missing[0]}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return plan


def sync_run_dir(run_dir: str | Path, dry_run: bool = False, force: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Upload and create the sweep; returns what was done (also kept in mirror.json).
    A dry run returns the command and the prior runs, and writes nothing. ``timeout_s``: how
    long one request to W&B's server may go unanswered."""
    plan = plan_sync(run_dir)
    previous = plan.status.get("synced")
    if previous and not force and not dry_run:
        raise ConfigError(f"{run_dir}: already uploaded to W&B sweep {previous['sweep_id']} "
                          "(--force uploads again and creates a new sweep)")
    if not plan.trial_runs:
        raise ConfigError(f"{run_dir}: no finished trial runs to upload")
    if not dry_run and not has_api_key():
        raise ConfigError("no W&B API key: run `wandb login` or set WANDB_API_KEY, then retry")
    command = sync_command(plan, include_synced=force)
    if dry_run:
        return {"command": command, "prior_runs": sorted(plan.trial_runs)}
    server = server_url()
    log.info("syncing %d runs to %s (a request unanswered for %g s fails it)...",
             plan.run_count, server, timeout_s)
    check_reachable(server, timeout_s)
    upload(command, timeout_s)
    sweep_id = create_sweep(plan)
    synced = {"sweep_id": sweep_id, "prior_runs": sorted(plan.trial_runs),
              "project": plan.status["project"], "entity": plan.status["entity"]}
    save_synced(plan, synced)
    return synced


def sync_command(plan: SyncPlan, include_synced: bool = False) -> list[str]:
    """``wandb sync`` naming the run folders themselves (nothing is copied or rewritten).
    ``wandb sync`` marks what it uploaded (``run-ID.wandb.synced``) and skips it next time
    (so a retry after a failed sweep creation uploads nothing twice); ``--force`` includes it."""
    wandb_cli = str(Path(sys.executable).with_name(WANDB_COMMAND))
    command = [wandb_cli, "sync", "--project", plan.status["project"]]
    if plan.status.get("entity"):
        command += ["--entity", plan.status["entity"]]
    if include_synced:
        command.append("--include-synced")
    return command + [str(path) for path in plan.folders]


def server_url(environ=os.environ) -> str:
    """The W&B server uploads go to, found as W&B finds it: WANDB_BASE_URL, else the base_url
    `wandb login --host` saved in W&B's settings file, else W&B's own default."""
    saved = configparser.RawConfigParser()
    try:
        saved.read(settings_file(environ))
    except configparser.Error:  # wandb itself warns about a damaged file and skips it
        pass
    url = environ.get("WANDB_BASE_URL") or saved.get("default", "base_url", fallback="")
    if not url:
        import wandb

        url = wandb.Settings().base_url
    return url.rstrip("/")


# W&B's own folder under ~/.config (where `wandb login --host` saves base_url) and its command
# beside the interpreter: W&B's names, not a run dir's wandb/ folder
USER_CONFIG_FOLDER = WANDB_COMMAND = "wandb"


def settings_file(environ) -> Path:
    if environ.get("WANDB_CONFIG_DIR"):
        return Path(environ["WANDB_CONFIG_DIR"]).expanduser() / "settings"
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".config" / USER_CONFIG_FOLDER / "settings"


def check_reachable(server: str, timeout_s: float) -> None:
    """One request to the server, unanswered for at most ``timeout_s`` (a name lookup is
    bounded by the resolver's own timeout); any HTTP answer will do."""
    try:
        urllib.request.urlopen(server, timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        raise SyncError(unreachable_line(server, why_unreachable(error, timeout_s))) from None


def why_unreachable(error: Exception, timeout_s: float) -> str:
    reason = getattr(error, "reason", error)  # URLError wraps the socket's error (or a text)
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return error_line(reason, 120, named=False)  # e.g. [Errno 111] Connection refused


def unreachable_line(server: str, why: str) -> str:
    if os.environ.get("WANDB_BASE_URL"):
        named, fix = " (WANDB_BASE_URL)", "check that address and this machine's network"
    else:
        named, fix = "", ("check this machine's network (for a self-hosted server, set "
                          "WANDB_BASE_URL to its address)")
    return scrub(f"cannot reach the W&B server {server}{named}: {why}; nothing was uploaded: "
                 f"{fix}, then retry")


def upload(command: list[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """`wandb sync`, each of its API requests bounded by ``timeout_s`` (whole seconds)."""
    env = {**os.environ, "WANDB_HTTP_TIMEOUT": str(math.ceil(timeout_s))}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise SyncError(scrub(f"wandb sync failed (exit {done.returncode}): "
                              f"{lines[-1] if lines else 'no output'}"))


def create_sweep(plan: SyncPlan) -> str:
    import wandb

    try:
        return wandb.sweep(plan.sweep_config, project=plan.status["project"],
                           entity=plan.status.get("entity"), prior_runs=sorted(plan.trial_runs))
    except Exception as error:
        raise SyncError(f"the runs are uploaded but creating the W&B sweep failed "
                        f"({described(error)})") from None


def save_synced(plan: SyncPlan, synced: dict) -> None:
    path = plan.run_dir / MIRROR_FILE
    status = json.loads(path.read_text())
    status["synced"] = synced
    write_json(path, status)
