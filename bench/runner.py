"""Run benchmarks by name and record each one's figures with the machine they came from."""
from __future__ import annotations

import datetime
import logging
import shutil
import time
from pathlib import Path

from bench.child import BenchError
from bench.machine import machine_info
from bench.registry import Benchmark, Context, Outcome, select
from bench.results import save_entry

log = logging.getLogger(__name__)


def run_benchmarks(names: list[str], tiny: bool, results_path: Path, scratch: Path,
                   repeats: int | None = None, command: str | None = None
                   ) -> tuple[dict, list[str]]:
    """Run them one after another; a failed one is recorded and the rest still run. Returns
    the whole results file and the names that failed. The benchmark page is regenerated from
    the file (bench/docs.py: docs/BENCHMARKS.md for the committed one, a page beside any other)."""
    from bench.docs import doc_beside

    results, failed = {"benchmarks": {}}, []
    for bench in select(names):
        entry = run_one(bench, tiny, scratch / bench.name, repeats, command)
        if entry.get("error"):
            failed.append(bench.name)
        results = save_entry(results_path, entry)
    doc_beside(results_path)
    return results, failed


def run_one(bench: Benchmark, tiny: bool, work_dir: Path, repeats: int | None,
            command: str | None = None) -> dict:
    from bench.lc_table import code_version

    shutil.rmtree(work_dir, ignore_errors=True)  # scratch from an earlier run would mislead
    work_dir.mkdir(parents=True)
    # What docs/BENCHMARKS.md prints beside the figures: the code and command behind them.
    entry = {"name": bench.name, "what": bench.what, "goal": bench.goal,
             "mode": "tiny" if tiny else "full", "machine": machine_info(),
             "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "code_version": code_version(), "command": command}
    log.info("bench %s (%s mode) ...", bench.name, entry["mode"])
    start = time.perf_counter()
    try:
        outcome: Outcome = bench.load()(Context(tiny=tiny, work_dir=work_dir, repeats=repeats))
    except (BenchError, ImportError, NotImplementedError) as error:
        log.error("bench %s failed: %s", bench.name, error)
        entry.update(headline="failed", met=None, ratio=None, figures={}, notes=[],
                     error=f"{type(error).__name__}: {error}")
    else:
        # A tiny run proves the code works; its figures say nothing about the goal.
        met = None if tiny else outcome.met
        entry.update(ratio=outcome.ratio, headline=outcome.headline, met=met,
                     figures=outcome.figures, notes=outcome.notes)
        log.info("bench %s: %s", bench.name, outcome.headline)
    entry["wall_s"] = round(time.perf_counter() - start, 1)
    return entry
