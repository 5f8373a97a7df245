"""``python -m sweep <command>``: one command line for training, prediction and sweeps.

Each command lives in its own module exposing ``add_parser(subparsers)``; the parser it adds
sets ``func`` to a function of the parsed arguments that returns an exit code. A command that
sets ``takes_overrides`` receives the flags argparse does not know as ``args.overrides``
(``run``: ``--section.key=value``); for any other command they are argparse's usual error.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sweep import sigterm
from sweep.cli.errors import USER_ERRORS, one_line

# Modules that contribute commands, in the order `--help` lists them.
COMMAND_MODULES = ["sweep.cli.train", "sweep.cli.sweep", "sweep.cli.pick", "sweep.cli.report",
                   "sweep.cli.wandb", "sweep.cli.settings"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sweep", description="Seeded UNet/SegNet training and Ray Tune sweeps.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = unknown
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        code = int(args.func(args) or 0)
    except USER_ERRORS as error:
        # Bad input is the user's to fix: one line, no traceback, exit 2 (as argparse does).
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (sweep/sigterm.py) outside a Tuner
        print("interrupted", file=sys.stderr)
        code = 130
    return sigterm.exit_code(code)  # 143 once SIGTERM stopped the command, however it ended


if __name__ == "__main__":
    sys.exit(main())
