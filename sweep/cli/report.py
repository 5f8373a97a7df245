"""`report`: the compare-runs report of one or more sweeps, without a server."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help="write report.html, report.md and trials.csv for sweep runs",
        description="Leaderboard, seed-aware ranking and plots of one or more sweeps. The files "
                    "go into the first run directory.")
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories, e.g. runs/quickstart (several: compared)")
    report.add_argument("--warm-start", choices=("exclude", "include"), default="exclude",
                        help="whether the leaderboard lists the trials a warm start told the "
                             "sampler (default exclude: this run trained none of them and "
                             "holds no checkpoint of them; they are listed apart anyway)")
    report.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from sweep.report.build import write_report

    for run in args.runs:
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: no such run directory")
    fronts = [line for run in args.runs if (line := rebuild_front(run))]
    paths = write_report(args.runs, warm_start=args.warm_start)
    print(f"report: {paths['html']}")
    print(f"        {paths['md']}")
    print(f"trials: {paths['csv']}")
    for line in fronts:
        print(line)
    return 0


def rebuild_front(run: Path) -> str:
    """A multi-objective run's Pareto table, rebuilt from its trials as they stand; the line
    to print ('' for a run of one objective, or one whose experiment.yaml the report's own
    section reports missing)."""
    from sweep.front import write_front_of_run
    from sweep.rundir import EXPERIMENT_FILE, PARETO_CSV
    from training.settings import ConfigError

    if not (run / EXPERIMENT_FILE).is_file():
        return ""
    try:
        front = write_front_of_run(run)
    except ConfigError as error:
        return f"pareto: not rebuilt ({error})"
    if front is None:
        return ""
    return f"pareto: {run / PARETO_CSV} ({len(front)} on the front)"
