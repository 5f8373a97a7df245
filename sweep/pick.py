"""`pick`: the front trial a user wants, by constraints on the objectives (docs/PARETO.md).

Among the front's trials (sweep/front.py) meeting every constraint (``--max latency_ms=5``:
at most 5; ``--min val_dice=0.7``: at least 0.7), the best on the primary objective (the first
of search.objectives; ties: the next objectives, then the trial number). Without constraints
that is the default pick, the one the end of the sweep wrote. best.pth and best_config.yaml are
written as the end of a sweep writes them (sweep/best_model.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sweep.best_model import write_best_model
from sweep.experiment import Experiment, load_saved_experiment
from sweep.front import Point, write_front
from sweep.rundir import BEST_CHECKPOINT, BEST_CONFIG, EXPERIMENT_FILE, storage_of
from training.settings import ConfigError

BOUNDS = {"max": "<=", "min": ">="}  # --max m=v: m <= v; --min m=v: m >= v


@dataclass(frozen=True)
class Constraint:
    metric: str
    bound: str  # "max" or "min"
    value: float

    def met(self, value: float) -> bool:
        return value <= self.value if self.bound == "max" else value >= self.value

    def shortfall(self, value: float) -> float:
        """How far ``value`` is on the wrong side (0 when met; NaN never meets)."""
        if math.isnan(value):
            return math.inf
        return max(0.0, value - self.value if self.bound == "max" else self.value - value)

    def __str__(self) -> str:
        return f"{self.metric} {BOUNDS[self.bound]} {self.value:g}"


def parse_constraints(given: list[tuple[str, str]], metrics: list[str]) -> list[Constraint]:
    """``--max``/``--min`` as given, [(bound, "METRIC=NUMBER"), ...], on the run's objectives
    ``metrics``."""
    out = []
    for bound, text in given:
        metric, sep, number = text.partition("=")
        try:
            value = float(number) if sep else math.nan
        except ValueError:
            value = math.nan
        if not metric or not math.isfinite(value):
            raise ConfigError(f"pick: --{bound} {text!r} should be METRIC=NUMBER, e.g. "
                              f"--{bound} {metrics[-1]}=5")
        if metric not in metrics:
            raise ConfigError(f"pick: --{bound} {text!r}: {metric} is not an objective of "
                              f"this run (objectives: {', '.join(metrics)})")
        out.append(Constraint(metric, bound, value))
    return out


def meets(point: Point, constraints: list[Constraint], metrics: list[str]) -> bool:
    return all(c.met(point.values[metrics.index(c.metric)]) for c in constraints)


def closest(front: list[Point], constraints: list[Constraint], metrics: list[str]) -> Point:
    """The front trial nearest to meeting every constraint: the least total shortfall, each in
    units of that objective's range over the front (so latency and Dice weigh alike)."""
    def scale(metric: str) -> float:
        values = [p.values[metrics.index(metric)] for p in front]
        values = [v for v in values if not math.isnan(v)]
        span = max(values) - min(values) if values else 0.0
        return span or 1.0

    scales = {c.metric: scale(c.metric) for c in constraints}
    return min(front, key=lambda p: sum(c.shortfall(p.values[metrics.index(c.metric)])
                                        / scales[c.metric] for c in constraints))


def choose(front: list[Point], constraints: list[Constraint], metrics: list[str]) \
        -> Point | None:
    """The first front trial (best first) meeting every constraint and holding a checkpoint."""
    return next((p for p in front if meets(p, constraints, metrics) and p.has_checkpoint()),
                None)


def describe(point: Point, objectives: list[tuple[str, str]]) -> str:
    values = ", ".join(f"{metric} {value:.4g}" for (metric, _), value in
                       zip(objectives, point.values))
    return f"trial {point.number} ({point.trial_id}, epoch {point.row.get('epoch')}): {values}"


def pick_run(run_dir: Path, given: list[tuple[str, str]]) -> tuple[int, str]:
    """(exit code, the one line to print) for the constraints ``given`` ([(bound,
    "METRIC=NUMBER")], see parse_constraints); writes best.pth and best_config.yaml on
    success."""
    run_dir = Path(run_dir)
    if not (run_dir / EXPERIMENT_FILE).is_file():
        raise ConfigError(f"{run_dir}: no sweep here (no {EXPERIMENT_FILE})")
    experiment = load_saved_experiment(run_dir / EXPERIMENT_FILE)
    objectives = experiment.search.objective_list()
    if not objectives:
        raise ConfigError(f"{run_dir}: this run has one objective (val_dice, max): its best "
                          f"trial is {BEST_CHECKPOINT} already, nothing to pick from")
    metrics = [metric for metric, _ in objectives]
    constraints = parse_constraints(given, metrics)
    storage = storage_of(run_dir)
    front = write_front(experiment, run_dir, storage)  # the table rebuilt as it stands
    if not front:
        return 1, f"{run_dir}: no complete trial yet, so no front to pick from; nothing written"
    chosen = choose(front, constraints, metrics)
    wanted = " and ".join(map(str, constraints))
    if chosen is None:
        near = closest(front, constraints, metrics) if constraints else front[0]
        return 1, (f"no front trial meets {wanted or 'the default pick'} (of {len(front)} on "
                   f"the front); closest: {describe(near, objectives)}; nothing written")
    why = (f"the best {metrics[0]} among the front trials with {wanted}" if constraints
           else f"the default pick: the best {metrics[0]} on the front")
    write_best_model(experiment, run_dir, storage, chosen.record, chosen.row,
                     note=f"picked from the Pareto front: {describe(chosen, objectives)} "
                          f"({why})")
    return 0, (f"picked {describe(chosen, objectives)} ({why}, {len(front)} on the front); "
               f"wrote {run_dir / BEST_CONFIG} and {run_dir / BEST_CHECKPOINT}")


def default_pick(experiment: Experiment, front: list[Point] | None) -> Point | None:
    """What the end of a multi-objective sweep hands over: the front's best on the primary
    objective (None: one objective, or no complete trial)."""
    if not front:
        return None
    return choose(front, [], [metric for metric, _ in experiment.search.objective_list()])
