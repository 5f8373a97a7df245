"""``python -m bench``: run benchmarks by name; write bench/results.json and a Markdown table."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bench.registry import BENCHMARKS, COMMANDS


def build_parser() -> argparse.ArgumentParser:
    bench = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmarks (default: every CPU one) and write their figures, each with "
                    "the machine it came from, to a JSON file and a Markdown table beside it.")
    bench.add_argument("names", nargs="*", metavar="NAME",
                       help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all but "
                            f"gpu); or a command: {', '.join(COMMANDS)} (`python -m bench docs "
                            f"--help`)")
    bench.add_argument("--tiny", action="store_true",
                       help="tiny sizes: proves the code runs in seconds; figures mean nothing")
    bench.add_argument("--results", type=Path,
                       help="JSON file to write (default: bench/results.json, or "
                            "bench/out/tiny/results.json with --tiny)")
    bench.add_argument("--scratch", type=Path, default=Path("bench/out"),
                       help="scratch folder for data and runs (default: bench/out)")
    bench.add_argument("--repeats", type=int, help="override each benchmark's repeats")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return bench


def run_bench(args: argparse.Namespace, command: str | None = None) -> int:
    from bench.registry import select
    from training.settings import ConfigError

    if args.list:
        for b in BENCHMARKS.values():
            print(f"{b.name:9} goal {b.goal:38} {b.what}")
        for name, (_, what) in COMMANDS.items():
            print(f"{name:9} (command) {what}")
        return 0
    if args.repeats is not None and args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    select(args.names)  # unknown names fail before anything runs
    from bench.results import markdown_table
    from bench.runner import run_benchmarks

    mode = "tiny" if args.tiny else "full"
    results_path = args.results or (Path("bench/out/tiny/results.json") if args.tiny
                                    else Path("bench/results.json"))
    results, failed = run_benchmarks(args.names, args.tiny, results_path,
                                     args.scratch / mode, args.repeats, command)
    print(markdown_table(results), end="")
    from bench.docs import DOC, RESULTS

    page = DOC if results_path.resolve() == RESULTS.resolve() else \
        results_path.with_suffix(".md")
    print(f"\nwrote {results_path} and {page}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:  # `python -m bench docs ...`: a command, not a benchmark
        target, _ = COMMANDS[argv[0]]
        module, _, function = target.partition(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    import logging

    from sweep.cli.errors import USER_ERRORS, one_line

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return run_bench(args, " ".join(["python -m bench", *argv]))
    except USER_ERRORS as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
