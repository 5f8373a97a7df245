"""The compare-runs report: ``build.write_report([run_dir, ...])`` writes report.html
(self-contained), report.md and trials.csv into the first run directory (see
docs/RUN_LAYOUT.md for its inputs)."""
