"""Assemble the report from one or more run directories and write report.html, report.md and
trials.csv into the first one."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pandas as pd

from sweep.report import history, pareto, plots, sections, stats
from sweep.report.document import Bullets, Report, Section, Table, Text
from sweep.report.html import render_html
from sweep.report.load import STATUSES, RunData, load_run
from sweep.report.markdown import render_markdown
from sweep.report.slots import slots
from sweep.rundir import REPORT_HTML, REPORT_MD, TRIALS_CSV, write_text

log = logging.getLogger(__name__)


def write_report(run_dirs: list[Path], warm_start: str = "exclude") -> dict[str, Path]:
    """Write the compare-runs report; returns {"html": ..., "md": ..., "csv": ...} paths.
    ``warm_start``: "include" puts warm-start trials in the leaderboard (sweep/report/history.py
    says why they are left out by default)."""
    if not run_dirs:
        raise ValueError("write_report needs at least one run directory")
    runs = [history.marked(load_run(Path(d))) for d in run_dirs]
    report = build_report(runs, warm_start)
    out = Path(run_dirs[0])
    paths = {"html": out / REPORT_HTML, "md": out / REPORT_MD, "csv": out / TRIALS_CSV}
    # Written aside, then renamed: a reader (or a browser refresh) never sees half a report.
    write_text(paths["html"], render_html(report))
    write_text(paths["md"], render_markdown(report))
    write_text(paths["csv"], trials_csv(runs).to_csv(index=False))
    return paths


def trials_csv(runs: list[RunData]) -> pd.DataFrame:
    frames = [run.trials.assign(run=run.name) for run in runs if not run.trials.empty]
    if not frames:
        return pd.DataFrame(columns=["run", "trial_id", "status"])
    table = pd.concat(frames, ignore_index=True)
    first = ["run", "trial_id", "status", "reason", "epochs"]
    return table[first + [c for c in table if c not in first]]


def build_report(runs: list[RunData], warm_start: str = "exclude") -> Report:
    several = len(runs) > 1
    body: list[Section] = [comparison(runs)] if several else []
    for run in runs:
        body.extend(run_sections(run, f" — {run.name}" if several else "", several,
                                 warm_start))
    names = ", ".join(run.name for run in runs)
    subtitle = (f"{', '.join(str(r.path) for r in runs)} · written "
                f"{datetime.now().isoformat(timespec='seconds')}")
    return Report(f"Sweep report: {names}", subtitle, body)


def run_sections(run: RunData, suffix: str, several: bool,
                 warm_start: str = "exclude") -> list[Section]:
    ranking, verdict = sections.ranking(run, suffix)
    space, edge = sections.search_space(run, suffix)
    summary = summary_section(run, suffix, verdict, edge)
    if grown := history.summary_lines(run, warm_start):  # extensions, warm start
        summary.blocks.insert(1, Bullets(grown))
    if several:
        summary.title = f"Run {run.name}"
    board = history.with_warm_start(run) if warm_start == "include" else run
    chosen = [summary, sections.leaderboard(board, suffix),
              pareto.section(run, suffix),  # None with one objective
              history.section(run, suffix),
              ranking, sections.curves(run, suffix),
              space, sections.importance(run, suffix), sections.parallel(run, suffix),
              sections.throughput(run, suffix), sections.throughput_per_gpu(run, suffix),
              slots(run, suffix), sections.outcomes(run, suffix)]
    return [section for section in chosen if section is not None]


def summary_section(run: RunData, suffix: str, verdict: str,
                    edge: list[stats.EdgeWarning]) -> Section:
    section = Section(f"Summary{suffix}")
    section.add(Text(headline(run)))
    if run.missing:
        section.add(Text("What this run lacks (the report shows what it can):"),
                    Bullets(run.missing, "missing"))
    section.add(Text(verdict, "verdict"))
    steps = next_steps(run, verdict, edge)
    if steps:
        section.add(Text("What to do next:"), Bullets(steps))
    return section


def headline(run: RunData) -> str:
    trials = run.trials
    if trials.empty:
        return f"`{run.path}` holds no trials yet."
    outcome = ", ".join(f"{n} {status}" for status, n in status_order(trials).items())
    scored = trials.dropna(subset=["best_val_dice"])
    if scored.empty:
        return f"{len(trials)} trials ({outcome}); none reported a val_dice."
    best = scored.iloc[0]
    config = stats.config_label({p: best[f"config/{p}"] for p in run.params})
    epoch = sections.number(best.best_epoch, 0)
    return (f"{len(trials)} trials ({outcome}). Best: trial `{best.trial_id}` ({best.status}) "
            f"reached val_dice {best.best_val_dice:.4f} at epoch {epoch} with {config}.")


def status_order(trials: pd.DataFrame) -> pd.Series:
    """Trial counts per status, always in the same order: complete, pruned, infeasible, ..."""
    counts = trials.status.value_counts()
    order = [s for s in STATUSES if s in counts] + [s for s in counts.index if s not in STATUSES]
    return counts[order]


def next_steps(run: RunData, verdict: str, edge: list[stats.EdgeWarning]) -> list[str]:
    steps = [f"Widen the `{w.name}` range on its {w.side} side and sweep again: the best "
             f"trials sit at that edge." for w in edge]
    counts = run.trials.status.value_counts() if not run.trials.empty else {}
    if counts.get("infeasible", 0):
        steps.append(f"{counts['infeasible']} trial(s) ran out of memory: narrow batch_size or "
                     "width, or give each trial more GPU memory.")
    if counts.get("failed", 0):
        steps.append(f"{counts['failed']} trial(s) failed: see 'Trials that did not finish' "
                     "and Ray's error.txt in the trial folder under tune/.")
    if run.confirm is None and counts.get("complete", 0):
        steps.append(f"Confirm the winner against seed noise: `python -m sweep confirm "
                     f"{run.path}`.")
    elif "within seed noise" in verdict:
        steps.append("#1 and #2 are within seed noise: prefer the cheaper one, or confirm with "
                     "more seeds.")
    return steps


def comparison(runs: list[RunData]) -> Section:
    """Several runs: their best configurations side by side."""
    section = Section("Runs side by side")
    bests = {run.name: best_config(run) for run in runs}
    searched = {p for run in runs for p in run.params}
    differing = {k for config in bests.values() for k in config
                 if len({str(c.get(k)) for c in bests.values()}) > 1}
    keys = sorted(searched | differing)
    columns = {run.name: best_column(run) | {k: stats.fmt(bests[run.name].get(k, "—"))
                                             for k in keys} for run in runs}
    table = pd.DataFrame(columns).fillna("—")
    table.insert(0, "", table.index)
    section.add(Text("The best trial of each run (by best val_dice) and the settings that were "
                     "searched or differ between the runs."),
                Table(table.astype(str), "Best configuration per run"))
    return section.add(sections.figure_block(
        plots.best_curves(runs), "best learning curve of each run",
        "val_dice per epoch of each run's best trial.", "No run has a scored trial."))


def best_config(run: RunData) -> dict:
    """The best trial's settings: the experiment's fixed ones (model, width, ...) under its own."""
    scored = run.trials.dropna(subset=["best_val_dice"]) if not run.trials.empty else run.trials
    if scored.empty:
        return {}
    best = scored.iloc[0]
    fixed = run.experiment.get("train") if isinstance(run.experiment.get("train"), dict) else {}
    searched = {c.removeprefix("config/"): best[c] for c in scored if c.startswith("config/")}
    return {**fixed, **searched}


def best_column(run: RunData) -> dict[str, str]:
    trials = run.trials
    scored = trials.dropna(subset=["best_val_dice"]) if not trials.empty else trials
    column = {"trials": str(len(trials)), "complete / pruned / other": status_triple(trials)}
    if scored.empty:
        return column | {"best val_dice": "—"}
    best = scored.iloc[0]
    column |= {"best val_dice": sections.number(best.best_val_dice),
               "best val_iou": sections.number(best.best_val_iou), "best trial": best.trial_id,
               "epochs": str(best.epochs), "samples/s": sections.number(best.samples_per_s, 1)}
    confirm = stats.confirm_groups(run)
    if not confirm.empty:
        top = confirm.iloc[0]
        column["confirm mean ± std (n)"] = (f"{top['mean']:.4f} ± "
                                            f"{sections.number(top['std'])} ({top.n})")
    return column


def status_triple(trials: pd.DataFrame) -> str:
    if trials.empty:
        return "0 / 0 / 0"
    counts = trials.status.value_counts()
    other = len(trials) - counts.get("complete", 0) - counts.get("pruned", 0)
    return f"{counts.get('complete', 0)} / {counts.get('pruned', 0)} / {other}"
