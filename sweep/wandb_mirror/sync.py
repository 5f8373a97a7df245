"""``wandb-sync``: upload a sweep's offline runs as they are, then create the W&B sweep that
holds them.

Offline runs carry no sweep id (they are tied by group, config and ``wandb/mirror.json``), so
``wandb sync --project P [--entity E] DIR...`` uploads the run folders unchanged; then
``wandb.sweep(config, project=..., entity=..., prior_runs=[run ids])`` creates the W&B sweep
with the uploaded trial runs attached.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from sweep.rundir import MIRROR_FILE, WANDB_SWEEP_FILE, write_json
from sweep.wandb_mirror.settings import has_api_key
from sweep.wandb_mirror.writer import described, scrub
from training.settings import ConfigError


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


def sync_run_dir(run_dir: str | Path, dry_run: bool = False, force: bool = False) -> dict:
    """Upload and create the sweep; returns what was done (also kept in mirror.json).
    A dry run returns the command and the prior runs, and writes nothing."""
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
    upload(command)
    sweep_id = create_sweep(plan)
    synced = {"sweep_id": sweep_id, "prior_runs": sorted(plan.trial_runs),
              "project": plan.status["project"], "entity": plan.status["entity"]}
    save_synced(plan, synced)
    return synced


def sync_command(plan: SyncPlan, include_synced: bool = False) -> list[str]:
    """``wandb sync`` naming the run folders themselves (nothing is copied or rewritten).
    ``wandb sync`` marks what it uploaded (``run-ID.wandb.synced``) and skips it next time
    (so a retry after a failed sweep creation uploads nothing twice); ``--force`` includes it."""
    wandb_cli = str(Path(sys.executable).with_name("wandb"))
    command = [wandb_cli, "sync", "--project", plan.status["project"]]
    if plan.status.get("entity"):
        command += ["--entity", plan.status["entity"]]
    if include_synced:
        command.append("--include-synced")
    return command + [str(path) for path in plan.folders]


def upload(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
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
