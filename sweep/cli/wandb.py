"""`wandb-sync` and `wandb-view`: a sweep's W&B runs, uploaded or browsed locally."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sweep.rundir import WANDB_DIR, WANDB_SWEEP_FILE
from sweep.wandb_mirror.sync import DEFAULT_TIMEOUT_S
from training.settings import ConfigError, require

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    sync = subparsers.add_parser(
        "wandb-sync", help="upload a sweep's offline W&B runs and create its W&B sweep",
        description=f"Upload the run folders under runs/NAME/{WANDB_DIR}/ as they are with "
                    f"`wandb sync`, then create a W&B sweep (runs/NAME/{WANDB_SWEEP_FILE}) "
                    "holding those runs (prior_runs). Needs an API key.")
    sync.add_argument("run_dir", help="the sweep's run directory, e.g. runs/quickstart")
    sync.add_argument("--dry-run", action="store_true",
                      help="print what would be uploaded; upload and write nothing")
    sync.add_argument("--force", action="store_true",
                      help="upload again although an earlier wandb-sync did (a new sweep)")
    sync.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                      help="give up on a request W&B's server leaves unanswered this long "
                           "(default: %(default)g)")
    sync.set_defaults(func=run_sync)

    view = subparsers.add_parser("wandb-view", help="browse a sweep's W&B runs locally "
                                                    "(`wandb leet`, no network)")
    view.add_argument("run_dir", help="the sweep's run directory, e.g. runs/quickstart")
    view.set_defaults(func=run_view)


def run_sync(args: argparse.Namespace) -> int:
    from sweep.wandb_mirror.sync import SyncError, sync_run_dir

    require(0 < args.timeout_s <= 3600, "command line", "--timeout-s", args.timeout_s,
            "a positive number of seconds, up to 3600")
    try:
        done = sync_run_dir(args.run_dir, dry_run=args.dry_run, force=args.force,
                            timeout_s=args.timeout_s)
    except SyncError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.dry_run:
        log.info("would upload %d trial runs (%s) with:\n  %s", len(done["prior_runs"]),
                 ", ".join(done["prior_runs"]), " ".join(done["command"]))
        log.info("then create a W&B sweep from %s holding them",
                 Path(args.run_dir) / WANDB_SWEEP_FILE)
        return 0
    where = "/".join(filter(None, [done["entity"], done["project"]]))
    log.info("uploaded %d trial runs to %s; W&B sweep %s holds them (open it from the "
             "project's Sweeps tab)", len(done["prior_runs"]), where, done["sweep_id"])
    return 0


def run_view(args: argparse.Namespace) -> int:
    folder = Path(args.run_dir) / WANDB_DIR
    if not folder.is_dir():
        raise ConfigError(f"{args.run_dir}: no W&B runs here ({folder} is missing)")
    wandb_cli = str(Path(sys.executable).with_name("wandb"))
    os.execv(wandb_cli, [wandb_cli, "leet", str(folder)])
    return 0  # not reached: leet replaced this process
