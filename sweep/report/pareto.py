"""The Pareto section of a report on a sweep with several search.objectives (docs/PARETO.md):
the primary objective against each cost, every complete trial a point, the front's trials
strong, the dominated ones faded, the seeds' spread as error bars; the front's configurations
(pareto.csv's rows); and the default pick said. A run of one objective gets no such section,
so its report stays as it was.

The front is sweep/front.py's decision, read here from pareto.csv (written at the end of the
sweep and again by `report` before the report is built): this module draws it and never
decides it again. A trial's point is its last epoch, as front.py scores it. Pruned trials are
left out of the figure, as front.py leaves them out of the front: their values are an earlier
epoch's, of a model trained less.
"""
from __future__ import annotations

import math
import re

import pandas as pd

from sweep import rundir
from sweep.report import plots, stats
from sweep.report.document import Image, Section, Table, Text
from sweep.report.load import RunData

# best_config.yaml's line when `pick` replaced the default pick (sweep/pick.py writes it).
PICKED_LINE = re.compile(r"^# picked from the Pareto front: (.+)$", re.MULTILINE)
BOUND = {"min": "max", "max": "min"}  # a cost minimised is capped by --max, and vice versa


def read_front(run: RunData) -> pd.DataFrame | None:
    """pareto.csv's rows, best primary objective first (None: missing or unreadable)."""
    try:
        return pd.read_csv(run.path / rundir.PARETO_CSV, dtype={"trial_id": str})
    except (OSError, ValueError):  # pandas' EmptyDataError and ParserError are ValueErrors
        return None


def points(run: RunData, front_ids: set[str]) -> pd.DataFrame:
    """One row per complete trial with every objective at its last epoch (a resumed trial's
    later row of an epoch counts, as in front.py): trial_id, number, the objectives, the
    primary's lowest and highest seed (``low``, ``high``: NaN with one seed) and ``on_front``."""
    metrics = [metric for metric, _ in run.objectives]
    seeds = [c for c in run.history if c.startswith(f"{metrics[0]}_seed")]
    rows = []
    complete = run.trials[run.trials.status == rundir.COMPLETE] if not run.trials.empty \
        else run.trials
    for trial in complete.itertuples():
        epochs = run.history[run.history.trial_id == trial.trial_id].dropna(subset=["epoch"])
        if epochs.empty:
            continue
        last = epochs.sort_values("epoch", kind="stable").iloc[-1]
        per_seed = last[seeds].dropna() if seeds else pd.Series(dtype=float)
        rows.append({"trial_id": trial.trial_id, "number": trial.number,
                     **{metric: last[metric] for metric in metrics},
                     "low": per_seed.min() if len(per_seed) > 1 else float("nan"),
                     "high": per_seed.max() if len(per_seed) > 1 else float("nan"),
                     "on_front": trial.trial_id in front_ids})
    table = pd.DataFrame(rows, columns=["trial_id", "number", *metrics, "low", "high",
                                        "on_front"])
    return table.dropna(subset=metrics).astype({"on_front": bool})


def section(run: RunData, suffix: str) -> Section | None:
    """None for a run of one objective."""
    objectives = run.objectives
    if not objectives:
        return None
    result = Section(f"Pareto front{suffix}")
    front = read_front(run)
    if front is None:
        return result.add(Text(f"{rundir.PARETO_CSV} is missing or unreadable: `python -m "
                               f"sweep report {run.path}` writes it from the trials' results.",
                               "missing"))
    drawn = points(run, set(front.trial_id))
    result.add(Text(describe(run, drawn, front)), Text(default_pick(run, front), "note"))
    names = " and ".join(metric for metric, _ in objectives[1:])
    figure = plots.pareto_fronts(drawn, objectives)
    result.add(Text("No complete trial has every objective: nothing to draw.", "missing")
               if figure is None else Image(
                   plots.to_png(figure), f"Pareto front: {objectives[0][0]} against {names}",
                   f"Each dot is a complete trial at its last epoch: blue and numbered the "
                   f"front ({rundir.PARETO_CSV}), joined by the front's staircase; grey the "
                   f"dominated trials. Bars: from the lowest to the highest seed of "
                   f"{objectives[0][0]}. Pruned trials are left out."))
    if not front.empty:
        result.add(Table(front_table(front, objectives),
                         f"The front's {len(front)} trial(s), best {objectives[0][0]} first "
                         f"({rundir.PARETO_CSV})"))
    return result


def describe(run: RunData, drawn: pd.DataFrame, front: pd.DataFrame) -> str:
    said = ", ".join(f"{metric} ({mode})" for metric, mode in run.objectives)
    pruned = int((run.trials.status == rundir.PRUNED).sum()) if not run.trials.empty else 0
    text = (f"Objectives: {said}; the first is the primary. {len(drawn)} complete trial(s), "
            f"{len(front)} on the front (no other complete trial is as good in every "
            f"objective and better in one), {int((~drawn.on_front).sum())} dominated.")
    if pruned:
        text += (f" {pruned} pruned trial(s) are left out: MO-ASHA stopped them, so their "
                 "values are an earlier epoch's, of a model trained less (docs/PARETO.md).")
    return text


def default_pick(run: RunData, front: pd.DataFrame) -> str:
    """Which trial best.pth is, and a command that picks another."""
    primary = run.objectives[0][0]
    if front.empty:
        return ("No complete trial, so no front: best.pth is the best scored trial's, as in a "
                "sweep of one objective.")
    first = front.iloc[0]
    picked = PICKED_LINE.search(read_text(run.path / rundir.BEST_CONFIG))
    chosen = f"trial {first['number']} (`{first['trial_id']}`): the front's best {primary}"
    text = (f"The default pick was {chosen}; `pick` has replaced it since: best.pth is now "
            f"{picked.group(1)}." if picked else f"best.pth is {chosen} (the default pick, "
            f"written by the end of the sweep).")
    if example := pick_example(run, front):
        option, other = example
        text += (f" `python -m sweep pick {run.path} {option}` picks another (trial "
                 f"{other['number']}: {primary} {number(float(other[primary]))}).")
    return text


def pick_example(run: RunData, front: pd.DataFrame) -> tuple[str, pd.Series] | None:
    """A bound on the first cost and the front trial it picks: the first trial down the front
    (best primary first, pick's order) cheaper than every trial before it, with the bound
    written between its cost and theirs. None if no later trial is cheaper."""
    cost, mode = run.objectives[1]
    sign = 1.0 if mode == "min" else -1.0  # compared as costs to minimise
    best = sign * float(front.iloc[0][cost])
    for _, row in front.iloc[1:].iterrows():
        value = sign * float(row[cost])
        if value < best:
            return f"--{BOUND[mode]} {cost}={bound_text(value, best, sign)}", row
    return None


def bound_text(value: float, beyond: float, sign: float) -> str:
    """The shortest number in [value, beyond) (costs to minimise, signed back by ``sign``): a
    bound that keeps the trial of ``value`` and leaves out the ones at ``beyond``."""
    for digits in range(3, 18):
        text = f"{sign * value:.{digits}g}"
        if value <= sign * float(text) < beyond:
            return text
    return repr(sign * value)


def front_table(front: pd.DataFrame, objectives: list[tuple[str, str]]) -> pd.DataFrame:
    """pareto.csv's rows as the report shows them: settings, objectives, seeds' range."""
    table = pd.DataFrame({"trial": front["number"].astype(str), "id": front["trial_id"],
                          "epoch": front["epoch"].map(lambda v: number(v, 0))})
    for column in (c for c in front if c.startswith("config/")):
        table[column.removeprefix("config/")] = front[column].map(stats.fmt)
    for metric, mode in objectives:
        # scores as the leaderboard writes them; costs (1.585e+06 FLOPs, 3.2 ms) in 4 digits
        table[f"{metric} ({mode})"] = [number(float(v)) if metric.startswith("val_")
                                       else f"{float(v):.4g}" for v in front[metric]]
        low, high = f"{metric}_seed_min", f"{metric}_seed_max"
        if low in front and front[low].notna().any():
            table[f"{metric} seeds"] = [f"{number(a)} – {number(b)}"
                                        for a, b in zip(front[low], front[high])]
    return table.astype(str)


def number(value, digits: int = 4) -> str:
    """As the leaderboard writes numbers ("—" for none); not imported from sections.py, which
    would make the sweep layer one import level deeper (tests/test_layout.py)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def read_text(path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""
