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
    report.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from sweep.report.build import write_report

    for run in args.runs:
        if not run.is_dir():
            raise FileNotFoundError(f"{run}: no such run directory")
    paths = write_report(args.runs)
    print(f"report: {paths['html']}")
    print(f"        {paths['md']}")
    print(f"trials: {paths['csv']}")
    return 0
