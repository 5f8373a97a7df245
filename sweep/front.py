"""The Pareto front of a sweep with several ``search.objectives`` (docs/PARETO.md): which trials
are on it, and the rows of the run directory's Pareto table (rundir.PARETO_CSV), written when
the sweep ends and again by `report`. Light on purpose (no Ray, no torch): the searcher, the end
of a sweep, `report` and `pick` all read it.

Candidates are the COMPLETE trials (trial_status.json: the outcome owner's verdict), those that
trained every epoch. A pruned trial is not one: its values are an earlier epoch's, of a model
trained less, so it would sit on the front beside (or push off it) models that are not
comparable; MO-ASHA stopped it because earlier trials were better at its rung.

A trial's point is its LAST epoch's objectives (each the mean over the trial's seeds), which is
also what Optuna is told. Not the single-objective path's best-val_dice epoch: with several
objectives no epoch is best in all of them, the costs are those of the trained model, and the
last epoch's checkpoint is the one Ray always keeps, so best.pth is the model the row describes.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from sweep.experiment import Experiment, load_saved_experiment
from sweep.pareto import pareto_front
from sweep.rundir import (
    COMPLETE,
    EXPERIMENT_FILE,
    METRIC,
    PARETO_CSV,
    TrialRecord,
    TrialStorage,
    read_statuses,
    read_trial,
    storage_of,
    write_text,
)

# Objectives whose every seed is in the result rows (<metric>_seed<S>: training/replicates.py),
# so a front row can show their spread; val_loss is recorded as the seeds' mean only.
PER_SEED = ("val_dice", "val_iou")


@dataclass
class Point:
    """A complete trial as a point of the objective space."""
    number: int  # the trial's place in the order of suggestions (trial_status.json)
    record: TrialRecord  # its folder: params, result rows, kept checkpoints
    row: dict  # its last epoch's result row
    values: list[float]  # the objectives at that epoch, in search.objectives' order

    @property
    def trial_id(self) -> str:
        return self.record.trial_id

    def has_checkpoint(self) -> bool:
        return self.row.get("checkpoint_dir_name") in self.record.checkpoints


def final_values(result: dict | None, metrics: list[str]) -> list[float] | None:
    """The objectives of one result row, or None if it lacks one of them."""
    if not result or any(result.get(metric) is None for metric in metrics):
        return None
    return [float(result[metric]) for metric in metrics]


def last_row(record: TrialRecord) -> dict | None:
    """The trial's last epoch (a resumed trial may repeat an epoch: the later row counts)."""
    rows = [row for row in record.rows if METRIC in row and row.get("epoch") is not None]
    return max(reversed(rows), key=lambda row: row["epoch"], default=None)


def complete_points(experiment: Experiment, run_dir: Path,
                    storage: TrialStorage) -> list[Point]:
    """Every complete trial with all its objectives, by trial number."""
    metrics = [metric for metric, _ in experiment.search.objective_list()]
    statuses = read_statuses(run_dir)
    points = []
    for trial_id, entry in statuses.items():
        if entry.get("status") != COMPLETE:
            continue
        record = read_trial(storage, trial_id)
        row = last_row(record) if record else None
        values = final_values(row, metrics)
        if values is not None:
            points.append(Point(int(entry.get("number", -1)), record, row, values))
    return sorted(points, key=lambda point: point.number)


def best_first(points: list[Point], modes: list[str]) -> list[Point]:
    """Points ordered best first on the primary objective, then on each next one, then by
    trial number (a NaN last): the order of the table, and `pick`'s preference."""
    def key(point: Point):
        signed = [(-v if mode == "max" else v) for v, mode in zip(point.values, modes)]
        return [math.inf if math.isnan(v) else v for v in signed] + [point.number]

    return sorted(points, key=key)


def front_of(points: list[Point], modes: list[str]) -> list[Point]:
    """The non-dominated points, best first (``best_first``)."""
    front = pareto_front([point.values for point in points], modes) if points else []
    return best_first([points[i] for i in front], modes)


def table_rows(experiment: Experiment, front: list[Point]) -> list[dict]:
    """The Pareto table: per front trial its number, id, last epoch, searched settings
    (config/<name>), each objective, and for val_dice/val_iou objectives the lowest and highest
    of the trial's seeds (<metric>_seed_min/_max; empty with one seed)."""
    objectives = experiment.search.objective_list()
    seeds = experiment.seeds()
    rows = []
    for point in front:
        names = list(experiment.space) + [k for k in point.record.params
                                          if k not in experiment.space]
        row = {"number": point.number, "trial_id": point.trial_id,
               "epoch": point.row.get("epoch")}
        row.update({f"config/{name}": point.record.params.get(name) for name in names})
        for (metric, _), value in zip(objectives, point.values):
            row[metric] = value
            if metric in PER_SEED:
                per_seed = [point.row.get(f"{metric}_seed{seed}") for seed in seeds]
                known = len(seeds) > 1 and None not in per_seed
                row[f"{metric}_seed_min"] = min(per_seed) if known else ""
                row[f"{metric}_seed_max"] = max(per_seed) if known else ""
        rows.append(row)
    return rows


def to_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or ["number", "trial_id"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_front(experiment: Experiment, run_dir: Path,
                storage: TrialStorage) -> list[Point] | None:
    """Write the run directory's Pareto table and return its points, best first (empty when
    no trial completed); None, writing nothing, when the sweep has one objective."""
    objectives = experiment.search.objective_list()
    if not objectives:
        return None
    front = front_of(complete_points(experiment, run_dir, storage),
                     [mode for _, mode in objectives])
    write_text(Path(run_dir) / PARETO_CSV, to_csv(table_rows(experiment, front)))
    return front


def write_front_of_run(run_dir: Path) -> list[Point] | None:
    """The same for a run directory as it stands (`report`, `pick`)."""
    experiment = load_saved_experiment(Path(run_dir) / EXPERIMENT_FILE)
    return write_front(experiment, Path(run_dir), storage_of(run_dir))
