"""The Pareto front of a multi-objective sweep for its W&B summary run: the rows of pareto.csv
(sweep/front.py writes it before the end of the sweep hands the mirror its best model), as a
table's columns and rows. Pure (no wandb), so the writer's part is small and this is cheap to
test."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from sweep import rundir

TEXT_COLUMNS = ("trial_id",)  # an id made of digits is still an id, not a number


def front_rows(run_dir: str | Path) -> tuple[list[str], list[list]] | None:
    """(columns, rows) of the run directory's pareto.csv: numbers as numbers, an empty cell
    (the seeds' range of a one-seed trial) as None; None without a readable file."""
    try:
        text = (Path(run_dir) / rundir.PARETO_CSV).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    reader = csv.reader(io.StringIO(text))
    columns = next(reader, None)
    if not columns:
        return None
    rows = [[cell if column in TEXT_COLUMNS else value_of(cell)
             for column, cell in zip(columns, row)] for row in reader]
    return columns, rows


def value_of(cell: str):
    if cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell  # a categorical setting (optimizer: adamw)
