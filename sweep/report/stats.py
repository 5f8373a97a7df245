"""Seed-aware ranking, edge-of-range warnings and parameter importance. The statistics are
scipy's (t interval, Welch's t-test) and Optuna's (PED-ANOVA importance), not hand-rolled."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sweep.report.load import STATUSES, RunData
from sweep.report.space import NOISE, SPEED_ONLY, position_in_range

ALPHA = 0.05
EDGE = 0.1  # the outer 10 % of a range (log scale for log parameters) counts as its edge
GROUP_COLUMNS = ["configuration", "n", "mean", "std", "ci95_low", "ci95_high", "trials"]


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def config_label(values: dict) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items()) or "(no searched parameter)"


def result_params(run: RunData) -> list[str]:
    """Searched parameters that can change results: not the seed, not speed-only settings."""
    return [p for p in run.params if p not in NOISE and p not in SPEED_ONLY]


def seed_groups(run: RunData) -> pd.DataFrame:
    """Complete trials grouped by configuration without seed (and without speed-only settings)."""
    trials = run.trials
    if trials.empty:
        return pd.DataFrame(columns=GROUP_COLUMNS)
    done = trials[(trials["status"] == "complete") & trials["best_val_dice"].notna()]
    keys = [f"config/{p}" for p in result_params(run)]
    rows = []
    groups = done.groupby(keys, dropna=False, sort=False) if keys else [((), done)]
    for values, group in groups:
        if group.empty:
            continue
        values = values if isinstance(values, tuple) else (values,)
        label = config_label(dict(zip(result_params(run), values)))
        rows.append(group_row(label, group_scores(group),
                              ", ".join(group["trial_id"].astype(str))))
    return rank(rows)


def group_scores(group: pd.DataFrame) -> list[float]:
    """One score per seed: a several-seed trial (search.seeds) gives each seed's val_dice at
    its best mean epoch; a one-seed trial its best val_dice."""
    scores = []
    for _, trial in group.iterrows():
        seeds = trial.get("seed_scores")
        scores += list(seeds) if isinstance(seeds, list) and seeds else [trial["best_val_dice"]]
    return scores


def confirm_groups(run: RunData) -> pd.DataFrame:
    """confirm.json: the top configurations rerun with fresh seeds, full length."""
    configs = (run.confirm or {}).get("configs") or []
    shown = result_params(run)
    rows = []
    for entry in configs:
        given = entry.get("config") or {}
        # In the sweep's parameter order, so a configuration reads the same in both tables.
        config = ({k: given[k] for k in shown if k in given} if shown else dict(given))
        scores = [float(v) for v in entry.get("val_dice") or [] if v is not None]
        if scores:
            rows.append(group_row(config_label(config), scores,
                                  f"from trial {entry.get('source_trial', '?')}"))
    return rank(rows)


def group_row(label: str, scores: list[float], trials: str) -> dict:
    low, high = interval95(scores)
    return {"configuration": label, "n": len(scores), "mean": float(np.mean(scores)),
            "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan,
            "ci95_low": low, "ci95_high": high, "trials": trials, "scores": scores}


def rank(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=[*GROUP_COLUMNS, "scores"])
    return table.sort_values("mean", ascending=False, ignore_index=True)


def interval95(scores: list[float]) -> tuple[float, float]:
    """Student-t 95 % interval of the mean; undefined for one seed."""
    if len(scores) < 2 or np.std(scores) == 0:
        mean = float(np.mean(scores)) if scores else math.nan
        return (mean, mean) if len(scores) >= 2 else (math.nan, math.nan)
    low, high = stats.t.interval(0.95, len(scores) - 1, loc=np.mean(scores),
                                 scale=stats.sem(scores))
    return float(low), float(high)


def verdict(groups: pd.DataFrame, source: str) -> str:
    """One plain sentence: does #1 beat #2 beyond seed noise?"""
    if len(groups) == 0:
        return f"No {source} to rank."
    if len(groups) == 1:
        return f"Only one configuration among the {source}: nothing to compare it with."
    first, second = groups.iloc[0], groups.iloc[1]
    head = (f"#1 ({first.configuration}: mean val_dice {first['mean']:.4f}, n={first.n}) vs "
            f"#2 ({second.configuration}: {second['mean']:.4f}, n={second.n})")
    if min(first.n, second.n) < 2:
        short = ("each has one seed" if max(first.n, second.n) < 2
                 else f"#{1 if first.n < 2 else 2} has one seed")
        return (f"{head}: cannot tell whether #1 beats #2 beyond seed noise — Welch's t-test "
                f"needs at least 2 seeds of each, and {short} (run `python -m sweep confirm`).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical scores: scipy warns and returns nan
        test = stats.ttest_ind(first.scores, second.scores, equal_var=False)
    if math.isnan(test.pvalue):
        return f"{head}: Welch's t-test is undefined (the seeds gave identical scores)."
    beats = test.pvalue < ALPHA
    outcome = ("#1 beats #2 beyond seed noise" if beats
               else "the difference is within seed noise: #1 does not clearly beat #2")
    return f"{head}: {outcome} (Welch's t-test, two-sided, p = {test.pvalue:.3g}, α = {ALPHA})."


@dataclass
class EdgeWarning:
    name: str
    side: str  # "lower" | "upper"
    message: str


def edge_warnings(run: RunData, top: int = 3) -> list[EdgeWarning]:
    """Best values piled at one end of a searched range suggest the optimum lies beyond it."""
    if run.trials.empty:
        return []
    trials = run.trials
    best = trials[(trials["status"] == "complete") & trials["best_val_dice"].notna()].head(top)
    if len(best) < 2:
        return []  # one trial at an edge says little
    out = []
    for name in result_params(run):
        spec = run.space.get(name)
        if spec is None or best.empty or f"config/{name}" not in best:
            continue
        values = best[f"config/{name}"].to_list()
        where = [position_in_range(spec, v) for v in values]
        if any(w is None for w in where):
            continue
        side = "lower" if max(where) <= EDGE else "upper" if min(where) >= 1 - EDGE else None
        if side:
            shown = ", ".join(fmt(v) for v in values)
            out.append(EdgeWarning(name, side, (
                f"The best {name} values ({shown}, top {len(values)} complete trials) sit at the "
                f"{side} edge of the searched range ({spec.describe()}): the optimum may lie "
                f"beyond it.")))
    return out


def param_importances(study, primary: str = "val_dice") -> tuple[dict[str, float], str]:
    """Optuna's parameter importances on the persisted study, or why there are none. A study of
    several objectives is given a target, its first (``primary``) objective: without one,
    Optuna 5's PED-ANOVA measures what takes a trial onto the Pareto front, which is not what
    a caption "for val_dice" says."""
    if study is None:
        return {}, "No Optuna study could be read, so no parameter importance."
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, (f"Parameter importance needs at least 2 complete trials in the study; "
                    f"it has {len(complete)}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # PED-ANOVA, named so the note below is true whatever Optuna's default becomes:
            # how the best trials' values differ from all trials'. Needs no scikit-learn.
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            values = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=primary_target(study))
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        return {}, f"Optuna could not compute importances: {error}"
    note = (f"Optuna's PedAnovaImportanceEvaluator on the {len(complete)} complete "
            "trials of the study: how much the best trials' values of each parameter differ "
            "from those of all trials.")
    if len(study.directions) > 1:
        note += (f" The study has {len(study.directions)} objectives: the importance is for "
                 f"the primary one, {primary} (given to Optuna as its target).")
    if len(complete) < 20:
        note += " With so few trials, treat the ranking as a hint, not a measurement."
    if "seed" in values:
        note += " A large share for `seed` means seed noise is as large as real effects."
    return values, note


def primary_target(study):
    """None for a study of one objective (Optuna scores its value); else the first objective,
    negated when maximised: with a target, PED-ANOVA counts lower as better."""
    from optuna.study import StudyDirection

    if len(study.directions) == 1:
        return None
    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    return lambda trial: sign * trial.values[0]


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty:
        return pd.DataFrame(columns=["status", "trials", "share"])
    counts = trials["status"].value_counts()
    counts = counts[[s for s in STATUSES if s in counts]
                    + [s for s in counts.index if s not in STATUSES]]
    table = counts.rename_axis("status").reset_index(name="trials")
    table["share"] = (table["trials"] / table["trials"].sum()).map(lambda s: f"{s:.0%}")
    return table


def gpu_throughput(run: RunData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples/s per trial and per GPU, from the epochs of trials that ran on a GPU (empty on a
    CPU sweep). A GPU's aggregate is the training samples of every epoch it ran divided by the
    time at least one trial was in an epoch there (Ray's timestamps: whole seconds)."""
    rows = run.history[run.history.gpu_ids.astype(str).str.len() > 0]
    if rows.empty:
        return pd.DataFrame(), pd.DataFrame()
    per_trial = rows.groupby("trial_id").agg(gpu=("gpu_ids", "last"),
                                             samples_per_s=("samples_per_s", "mean"),
                                             epochs=("epoch", "count")).reset_index()
    per_gpu = []
    for gpu, epochs in rows.groupby("gpu_ids"):
        spans = epoch_spans(epochs)
        busy, peak = busy_seconds(spans), most_at_once(spans)
        samples = epochs.train_samples.sum(min_count=1)
        per_gpu.append({"gpu": gpu, "trials": epochs.trial_id.nunique(),
                        "most at once": peak, "epochs": len(epochs),
                        "samples": samples, "busy_s": busy,
                        "aggregate_samples_per_s": samples / busy if busy > 0 else math.nan})
    return per_trial, pd.DataFrame(per_gpu)


def epoch_spans(epochs: pd.DataFrame) -> list[tuple[float, float]]:
    """[start, end] of each epoch: it ends when the trial reported it (``reported_at``, a float;
    older runs have only Ray's ``timestamp``, truncated to whole seconds) and started
    ``time_this_iter_s`` before. A trial's epochs run one after the other, so each starts no
    earlier than the trial's previous one ended: without that, truncated ends made one trial
    overlap itself and count as two at once."""
    end = epochs.reported_at.fillna(epochs.timestamp)  # load.py gives every history column
    frame = pd.DataFrame({"trial": epochs.trial_id, "epoch": epochs.epoch,
                          "start": end - epochs.time_this_iter_s, "end": end})
    spans = []
    for _, trial in frame.sort_values(["trial", "epoch"]).groupby("trial"):
        previous_end = -math.inf
        for start, stop in zip(trial.start, trial.end):
            start = max(start, previous_end) if not math.isnan(start) else start
            spans.append((start, stop))
            if not math.isnan(stop):
                previous_end = max(previous_end, stop)
    return spans


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(s for s in spans if not (math.isnan(s[0]) or math.isnan(s[1]))):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda ev: (ev[0], ev[1]))  # an end before a start at the same second
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak
