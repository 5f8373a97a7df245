"""`run`, `resume`, `extend`, `confirm` and `dashboard`: the sweep commands."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sweep import sigterm

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="sweep an experiment with Ray Tune + Optuna (TPE) + ASHA",
        description="Run the sweep an experiment file describes; everything lands in "
                    "RUNS_DIR/<name>/ (docs/RUN_LAYOUT.md). Settings after the file override "
                    "it, e.g. --search.trials=4 --train.width=16.")
    run.add_argument("experiment", type=Path, help="experiments/NAME.yaml")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), metavar="DIR")
    run.add_argument("--fresh", action="store_true",
                     help="delete an earlier sweep of the same name first")
    run.set_defaults(func=run_sweep, takes_overrides=True)  # main() hands it unknown flags

    resume = subparsers.add_parser("resume", help="continue an interrupted sweep",
                                   description="Continue a sweep with its searcher state: no "
                                               "finished trial runs again; unfinished ones "
                                               "continue from their last checkpoint.")
    resume.add_argument("run_dir", type=Path, help="runs/NAME")
    resume.set_defaults(func=resume_sweep)

    extend = subparsers.add_parser(
        "extend", help="add trials to a sweep (same study, searcher and run dir)",
        description="Raise a sweep's total to N trials: the same Optuna study, searcher "
                    "state, ASHA rungs, trial numbering and W&B sweep; nothing finished runs "
                    "again, unfinished trials continue first. In reproducible mode the N "
                    "trials are those one sweep of N would give. The space may change: "
                    "--space.lr='{loguniform: [1.0e-5, 1.0e-3]}', --space.KEY=null removes a "
                    "dimension; earlier trials inside the new space are told to the sampler, "
                    "the others stay in the report, marked (docs/EXTEND.md).")
    extend.add_argument("run_dir", type=Path, help="runs/NAME")
    extend.add_argument("--trials", type=int, required=True, metavar="N",
                        help="the new total (above the sweep's current one)")
    extend.set_defaults(func=extend_sweep, takes_overrides=True)  # --space.KEY=...

    confirm = subparsers.add_parser(
        "confirm", help="rerun the top configurations with new seeds",
        description="Rerun the sweep's top-k configurations with N new seeds each, without "
                    "early stopping; writes confirm.json (mean, std, n per configuration).")
    confirm.add_argument("run_dir", type=Path, help="runs/NAME")
    confirm.add_argument("--top-k", type=int, help="default: the experiment's confirm.top_k")
    confirm.add_argument("--seeds", type=int, help="default: the experiment's confirm.seeds")
    confirm.set_defaults(func=confirm_sweep)

    board = subparsers.add_parser(
        "dashboard", help="start/stop a local Ray head with the dashboard that sweeps join",
        description="A Ray head on this machine, dashboard on 127.0.0.1 with token auth; "
                    "sweeps started later join it, so the dashboard outlives them.")
    board.add_argument("action", choices=["start", "stop", "status"])
    board.add_argument("--port", type=int, default=6379, help="Ray's GCS port")
    board.add_argument("--dashboard-port", type=int, default=8265)
    board.set_defaults(func=dashboard_command)


def split_overrides(args: argparse.Namespace) -> list[str]:
    """Unknown --key=value flags are experiment overrides; anything else is a mistake."""
    from training.settings import ConfigError

    extra = args.overrides
    bad = [item for item in extra if not item.startswith("--") or "=" not in item]
    if bad:
        raise ConfigError(f"command line: {bad[0]!r} is not an override of the form --key=value")
    return extra


def before_ray() -> None:
    """First thing in a command that drives Ray: Ray reads RAY_AUTH_MODE when it is imported;
    SIGTERM stops the command as Ctrl-C does (sweep/sigterm.py)."""
    from sweep.dashboard import prepare_to_join_head

    sigterm.catch()
    prepare_to_join_head()


def run_sweep(args: argparse.Namespace) -> int:
    before_ray()
    from sweep.experiment import load_experiment
    from sweep.runner import run_experiment, summary_text

    experiment = load_experiment(args.experiment, split_overrides(args))
    summary = run_experiment(experiment, args.runs_dir, fresh=args.fresh)
    summary.stopped = sigterm.received()
    print(summary_text(summary), flush=True)
    return exit_code(summary)


def exit_code(summary) -> int:
    """130 (as for Ctrl-C) when trials were left unfinished: the sweep was interrupted."""
    return 130 if summary.counts.get("running") else 0


def resume_sweep(args: argparse.Namespace) -> int:
    before_ray()
    from sweep.runner import resume_experiment, summary_text

    summary = resume_experiment(args.run_dir)
    summary.stopped = sigterm.received()
    print(summary_text(summary), flush=True)
    return exit_code(summary)


def extend_sweep(args: argparse.Namespace) -> int:
    before_ray()
    from sweep.runner import extend_experiment, summary_text

    summary = extend_experiment(args.run_dir, args.trials, split_overrides(args))
    summary.stopped = sigterm.received()
    print(summary_text(summary), flush=True)
    return exit_code(summary)


def confirm_sweep(args: argparse.Namespace) -> int:
    from training.settings import require

    for flag, value in (("--top-k", args.top_k), ("--seeds", args.seeds)):
        if value is not None:  # as the experiment's confirm section (sweep/experiment.py)
            require(1 <= value <= 1000, "command line", flag, value, "between 1 and 1000")
    before_ray()
    from sweep.confirm import confirm_run, confirm_text

    print(confirm_text(confirm_run(args.run_dir, args.top_k, args.seeds)), flush=True)
    return 0


def dashboard_command(args: argparse.Namespace) -> int:
    from sweep import dashboard

    if args.action == "start":
        state = dashboard.start_head(args.port, args.dashboard_port)
        print(f"Ray head running (pid {state['pid']}, address {state['address']}); sweeps "
              f"started from now on join it. Stop it with `make dashboard-stop`.")
        print(dashboard.auth_help(state["dashboard_url"]))
    elif args.action == "stop":
        print("Ray head stopped" if dashboard.stop_head() else "no Ray head was running")
    else:
        state = dashboard.read_head_state()
        print(dashboard.auth_help(state["dashboard_url"]) if state else "no Ray head running")
    return 0
