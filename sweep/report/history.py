"""How a sweep grew, in its report: where `extend` added trials (extensions.json), which earlier
trials a changed space left out (the study's ``outside_space`` mark, sweep/respace.py), and the
trials a warm start told the sampler (warm_start.json, the study's ``warm_start`` mark).

An extended sweep is one sweep: one leaderboard, its trials numbered on, the extension points
marked on the val_dice-by-trial figure and said in the summary. Warm-start trials are listed
apart, and join the leaderboard only on request (``--warm-start include``): the leaderboard
ranks what this run trained, whose best model (best.pth) and confirm runs can only come from
its own trials; a warm-start trial was trained by another run, perhaps on another machine,
and this run directory holds no checkpoint of it.
"""
from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd

from sweep import rundir
from sweep.report import plots
from sweep.report.document import Image, Section, Table
from sweep.report.load import RunData

OUTSIDE_ATTR = "outside_space"  # sweep/respace.py (not imported: it imports optuna)
WARM_ATTR = "warm_start"  # sweep/warm_start.py
WARM_CHOICES = ("exclude", "include")


def read_json(path, kind: type):
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return kind()
    return value if isinstance(value, kind) else kind()


def extensions(run: RunData) -> list[dict]:
    return [e for e in read_json(run.path / rundir.EXTENSIONS_FILE, list) if isinstance(e, dict)]


def extended_at(run: RunData) -> list[int]:
    """The trial number each extension started from (trials from it on were added then)."""
    return [int(e["from_trials"]) for e in extensions(run)
            if isinstance(e.get("from_trials"), int)]


def study_trials(run: RunData) -> list:
    return run.study.get_trials(deepcopy=False) if run.study is not None else []


def marked(run: RunData) -> RunData:
    """The run with an ``outside_space`` column: why a trial is outside the space a later
    extension searched, and so not told to the sampler ('' for the others)."""
    if run.trials.empty:
        return run
    reasons = {t.user_attrs.get("ray_trial_id"): (t.user_attrs[OUTSIDE_ATTR] or {}).get(
        "reason", "outside") for t in study_trials(run) if OUTSIDE_ATTR in t.user_attrs}
    trials = run.trials.assign(outside_space=[reasons.get(t, "") for t in run.trials.trial_id])
    return dataclasses.replace(run, trials=trials)


def warm_rows(run: RunData) -> pd.DataFrame:
    """The warm-start trials of the study, as leaderboard rows (scores from their intermediate
    values: the study holds no other metric of them)."""
    rows = []
    for trial in study_trials(run):
        origin = trial.user_attrs.get(WARM_ATTR)
        if not origin:
            continue
        values = trial.intermediate_values
        best_epoch = max(values, key=lambda e: (values[e], -e)) if values else math.nan
        rows.append({"trial_id": f"{origin.get('source')} #{origin.get('number')}",
                     "source": str(origin.get("source")),
                     "status": str(trial.user_attrs.get("status") or trial.state.name.lower()),
                     "reason": "", "epochs": max(values, default=0),
                     "best_val_dice": values[best_epoch] if values else (trial.value or math.nan),
                     "best_epoch": best_epoch,
                     "last_val_dice": values[max(values)] if values else math.nan,
                     **{f"config/{k}": v for k, v in trial.params.items()}})
    return pd.DataFrame(rows)


def with_warm_start(run: RunData) -> RunData:
    """The run whose trials include the warm-start ones (for the leaderboard), best first."""
    warm = warm_rows(run)
    if warm.empty:
        return run
    own = run.trials.assign(source="this run")
    trials = pd.concat([own, warm], ignore_index=True).sort_values(
        "best_val_dice", ascending=False, na_position="last", ignore_index=True)
    return dataclasses.replace(run, trials=trials)


def summary_lines(run: RunData, warm_start: str = "exclude") -> list[str]:
    """What the summary says of the sweep's growth: each extension, and the warm start."""
    lines = []
    for entry in extensions(run):
        line = (f"Extended at trial {entry.get('from_trials')}: "
                f"{entry.get('from_trials')} -> {entry.get('to_trials')} trials "
                f"({entry.get('at', 'time unknown')}).")
        space = entry.get("space")
        if isinstance(space, dict):
            outside = space.get("outside") or {}
            line += (f" The space changed then ({', '.join(space.get('changed') or [])}): "
                     f"{len(outside)} earlier trial(s) lie outside it, are kept here (column "
                     f"`outside space`) and were not told to the sampler.")
        lines.append(line)
    record = read_json(run.path / rundir.WARM_START_FILE, dict)
    if record:
        sources = ", ".join(f"`{s.get('path')}` ({s.get('told', 0)} told)"
                            for s in record.get("sources", []))
        shown = ("they are in the leaderboard (source column)" if warm_start == "include"
                 else "the leaderboard shows this run's own trials (`python -m sweep report "
                      "--warm-start include` adds them)")
        lines.append(f"Warm-started: the sampler was told {record.get('told', 0)} finished "
                     f"trial(s) of {sources} before its first suggestion; none was trained "
                     f"again. Listed under 'How the sweep grew'; {shown}.")
    return lines


def section(run: RunData, suffix: str) -> Section | None:
    """The val_dice-by-trial figure with the extension points, the trials a changed space left
    out, and the warm-start trials; None for a sweep run once, from scratch."""
    at, warm = extended_at(run), warm_rows(run)
    if not at and warm.empty:
        return None
    result = Section(f"How the sweep grew{suffix}")
    figure = plots.dice_by_trial(run, at)
    if figure is not None:
        result.add(Image(plots.to_png(figure), "best val_dice by trial number",
                         "Best val_dice of each trial by trial number (line: the best so far); "
                         "dashed: where the sweep was extended, the trials right of a line "
                         "added then; hollow: outside the space searched now."))
    trials = run.trials
    if not trials.empty and "outside_space" in trials and trials.outside_space.astype(bool).any():
        outside = trials[trials.outside_space.astype(bool)]
        result.add(Table(outside[["trial_id", "number", "status", "outside_space"]].rename(
            columns={"trial_id": "trial", "outside_space": "why not told"}).astype(str),
            "Trials outside the space searched now (kept, not told to the sampler)"))
    if not warm.empty:
        params = [c for c in warm if c.startswith("config/")]
        table = warm[["trial_id", "status", "best_val_dice", "best_epoch", "epochs", *params]]
        table = table.assign(best_val_dice=table.best_val_dice.map(number),
                             best_epoch=table.best_epoch.map(lambda v: number(v, 0)))
        table.columns = [c.removeprefix("config/") for c in table.columns]
        result.add(Table(table.rename(columns={"trial_id": "trial"}).astype(str),
                         f"{len(warm)} warm-start trial(s): told to the sampler before its "
                         f"first suggestion, not trained by this run"))
    return result


def number(value, digits: int = 4) -> str:
    """As the leaderboard writes numbers ("—" for none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
