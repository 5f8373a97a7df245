"""`pick`: the Pareto front trial that meets constraints, as best.pth and best_config.yaml."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    pick = subparsers.add_parser(
        "pick", help="choose a trial of a multi-objective sweep's Pareto front",
        description="Among the front trials of a sweep with several search.objectives that "
                    "meet every constraint, the best on the primary objective (the first one) "
                    "becomes best.pth and best_config.yaml. Without constraints: the default "
                    "pick, the best primary value on the front (docs/PARETO.md).")
    pick.add_argument("run_dir", type=Path, help="runs/NAME")
    # One list, in the order given: the printed line names the constraints that way.
    pick.add_argument("--max", action="append", dest="constraints", default=[],
                      type=lambda text: ("max", text), metavar="METRIC=VALUE",
                      help="an upper bound, e.g. --max latency_ms=5 (repeatable)")
    pick.add_argument("--min", action="append", dest="constraints", default=[],
                      type=lambda text: ("min", text), metavar="METRIC=VALUE",
                      help="a lower bound, e.g. --min val_dice=0.7 (repeatable)")
    pick.set_defaults(func=pick_command)


def pick_command(args: argparse.Namespace) -> int:
    from sweep.pick import pick_run

    code, line = pick_run(args.run_dir, args.constraints)
    print(line, flush=True)
    return code
