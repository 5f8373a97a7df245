"""The compare-runs report: ``write_report([run_dir, ...])`` writes report.html (self-contained),
report.md and trials.csv into the first run directory (see docs/RUN_LAYOUT.md for its inputs)."""
from sweep.report.build import write_report

__all__ = ["write_report"]
