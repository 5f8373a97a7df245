"""The sections of one run's report, each from the loaded run and the stats and plots modules."""
from __future__ import annotations

import math

import pandas as pd

from sweep.report import plots, stats
from sweep.report.document import Bullets, Image, Section, Table, Text
from sweep.report.load import RunData
from sweep.report.space import SPEED_ONLY


def number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def figure_block(figure, alt: str, caption: str, missing: str) -> Image | Text:
    if figure is None:
        return Text(missing, "missing")
    return Image(plots.to_png(figure), alt, caption)


def leaderboard(run: RunData, suffix: str) -> Section:
    section = Section(f"Leaderboard{suffix}")
    if run.trials.empty:
        return section.add(Text("No trials found: nothing under tune/ and no trial_status.json.",
                                "missing"))
    trials = run.trials
    table = pd.DataFrame({"#": range(1, len(trials) + 1), "trial": trials.trial_id,
                          "status": trials.status})
    if "source" in trials:  # warm-start trials included (sweep/report/history.py)
        table["source"] = trials.source.fillna("this run").astype(str)
    for name in run.params:
        table[name] = trials[f"config/{name}"].map(stats.fmt)
    table["best dice"] = trials.best_val_dice.map(number)
    table["at epoch"] = trials.best_epoch.map(lambda v: number(v, 0))
    table["last dice"] = trials.last_val_dice.map(number)
    table["IoU best / last"] = best_and_last(trials, "val_iou")
    table["loss best / last"] = best_and_last(trials, "val_loss")
    table["epochs"] = trials.epochs.astype(str)
    table["samples/s"] = trials.samples_per_s.map(lambda v: number(v, 1))
    if trials.gpu_peak_mem_mb.notna().any():  # trials ran on CUDA
        table["GPU peak MB"] = trials.gpu_peak_mem_mb.map(lambda v: number(v, 0))
    table["wall s"] = trials.wall_s.map(lambda v: number(v, 1))
    if "nodes" in trials and trials.nodes.astype(str).str.len().gt(0).any():
        table["nodes"] = trials.nodes.astype(str)  # the Ray nodes it ran on, in order
    if "outside_space" in trials and trials.outside_space.fillna("").astype(bool).any():
        # outside the space a later extension searched: kept, not told to the sampler
        table["outside space"] = trials.outside_space.fillna("").astype(str)
    section.add(Text("Sorted by best val_dice over the epochs each trial ran. Pruned trials ran "
                     "fewer epochs, so their numbers are not comparable with complete ones."),
                Table(table.astype(str), f"{len(trials)} trials of {run.name}"))
    # Complete and pruned trials need no explanation; the others do.
    unfinished = trials[~trials.status.isin(["complete", "pruned"])
                        & (trials.reason.astype(str).str.len() > 0)]
    if not unfinished.empty:
        section.add(Table(unfinished[["trial_id", "status", "reason"]].rename(
            columns={"trial_id": "trial"}).astype(str), "Trials that did not finish"))
    return section


def best_and_last(trials: pd.DataFrame, metric: str) -> list[str]:
    """Two numbers in one cell keeps the leaderboard narrow enough to read without scrolling."""
    return [f"{number(best)} / {number(last)}"
            for best, last in zip(trials[f"best_{metric}"], trials[f"last_{metric}"])]


def ranking(run: RunData, suffix: str) -> tuple[Section, str]:
    """Seed-aware ranking; returns the section and its one-sentence verdict."""
    section = Section(f"Seed-aware ranking{suffix}")
    shown = stats.result_params(run)
    section.add(Text("Configurations are grouped without their seed (and without "
                     f"{', '.join(SPEED_ONLY)}, which change speed, never results; torch threads "
                     "can change the last bits, so sweeps pin them), so repeated "
                     "configurations show how much val_dice moves between seeds."
                     + (f" Grouped by: {', '.join(shown)}." if shown else "")))
    confirm = stats.confirm_groups(run)
    sweep = stats.seed_groups(run)
    if not confirm.empty:
        verdict = stats.verdict(confirm, "confirm runs")
        section.add(Text("Primary evidence: confirm runs (the top configurations rerun with "
                         "fresh seeds, full length, no early stopping).", "note"),
                    Text(verdict, "verdict"), Table(group_table(confirm), "Confirm runs"))
    else:
        verdict = stats.verdict(sweep, "complete trials")
        section.add(Text(verdict, "verdict"))
        if run.confirm is None:
            section.add(Text("No confirm.json: the ranking rests on the sweep's own trials, "
                             "mostly one seed per configuration. Run `python -m sweep confirm "
                             f"{run.path}` for the primary evidence.", "note"))
    if sweep.empty:
        section.add(Text("No complete trial with a val_dice: nothing to group.", "missing"))
    else:
        section.add(Table(group_table(sweep), "Complete sweep trials, grouped without seed "
                                              "(best val_dice of each trial)"))
    return section, verdict


def group_table(groups: pd.DataFrame) -> pd.DataFrame:
    table = groups[stats.GROUP_COLUMNS].copy()
    table.insert(0, "#", range(1, len(table) + 1))
    for column in ("mean", "std", "ci95_low", "ci95_high"):
        table[column] = table[column].map(number)
    low, high = table.pop("ci95_low"), table.pop("ci95_high")
    table["95% interval"] = [f"{a} – {b}" if a != "—" else "— (needs n ≥ 2)"
                             for a, b in zip(low, high)]
    return table[["#", "configuration", "n", "mean", "std", "95% interval", "trials"]].astype(str)


def curves(run: RunData, suffix: str) -> Section:
    return Section(f"Learning curves{suffix}").add(figure_block(
        plots.learning_curves(run), "learning curves of the top trials",
        "val_dice and val_loss per epoch of the best trials.",
        "No per-epoch metrics to plot (no result.json with val_dice)."))


def search_space(run: RunData, suffix: str) -> tuple[Section, list[stats.EdgeWarning]]:
    section = Section(f"val_dice against each searched parameter{suffix}")
    if run.space:
        section.add(Bullets([f"`{p.name}`: {p.describe()}" for p in run.space.values()]))
    warnings = stats.edge_warnings(run)
    section.add(*[Text(w.message, "warning") for w in warnings])
    section.add(figure_block(
        plots.params_vs_dice(run), "val_dice against each searched parameter",
        "Each dot is a trial (colour = status, star = best); dotted lines mark the searched "
        "range.", "No trial has both a searched parameter and a val_dice to plot."))
    return section, warnings


def importance(run: RunData, suffix: str) -> Section:
    # Several objectives: the primary one's importance (Optuna's target), said in the caption.
    primary = run.objectives[0][0] if run.objectives else "val_dice"
    values, note = stats.param_importances(run.study, primary)
    section = Section(f"Parameter importance{suffix}")
    section.add(Text(note, "note" if values else "missing"))
    caption = (f"Optuna's importance of each parameter for {primary}"
               + (", the primary objective (Optuna's target)." if run.objectives else "."))
    if values:
        section.add(figure_block(plots.importance_bars(values, primary), "parameter importance",
                                 caption, ""))
    return section


def parallel(run: RunData, suffix: str) -> Section:
    return Section(f"Parallel coordinates{suffix}").add(figure_block(
        plots.parallel_coordinates(run), "parallel coordinates of the searched parameters",
        "Follow a line from left to right: its parameter values and the val_dice it reached.",
        "A parallel-coordinates view needs at least 2 scored trials and a searched parameter."))


def throughput(run: RunData, suffix: str) -> Section:
    section = Section(f"Throughput{suffix}")
    concurrency = (run.experiment.get("search") or {}).get("concurrency")
    shared = (f" Trials ran {concurrency} at a time and shared the machine, so compare speeds "
              "with care." if isinstance(concurrency, int) and concurrency > 1 else "")
    section.add(Text("`num_workers` changes speed only: augmentation is a function of (seed, "
                     "epoch, sample index) and shuffling of (seed, epoch), so results are the "
                     "same for any number of workers. `batch_size` changes results as well as "
                     "speed: it changes the optimisation." + shared, "note"))
    return section.add(figure_block(
        plots.throughput(run), "throughput against num_workers and batch_size",
        "Training samples per second (mean over each trial's epochs); black marks: means.",
        "No samples_per_s metric, or neither num_workers nor batch_size in the trial configs."))


def throughput_per_gpu(run: RunData, suffix: str) -> Section | None:
    """None on a CPU sweep: no trial was given a GPU, so there is nothing to show."""
    per_trial, per_gpu = stats.gpu_throughput(run)
    if per_gpu.empty:
        return None
    gpus = per_gpu.assign(
        samples=per_gpu.samples.map(lambda v: number(v, 0)),
        busy_s=per_gpu.busy_s.map(lambda v: number(v, 1)),
        aggregate_samples_per_s=per_gpu.aggregate_samples_per_s.map(lambda v: number(v, 1)))
    trials = per_trial.assign(samples_per_s=per_trial.samples_per_s.map(lambda v: number(v, 1)))
    return Section(f"Throughput per GPU{suffix}").add(
        Text("Aggregate: the training samples of every epoch run on that GPU over the seconds "
             "at least one trial was training there (Ray's timestamps, whole seconds). Trials "
             "with a fraction of a GPU share the card, so each one's samples/s is its share.",
             "note"),
        Table(gpus.rename(columns={"busy_s": "busy s", "aggregate_samples_per_s":
                                   "aggregate samples/s"}).astype(str), "Per GPU"),
        Table(trials.rename(columns={"trial_id": "trial", "samples_per_s": "samples/s (mean)"})
              .astype(str), "Per trial"))


def outcomes(run: RunData, suffix: str) -> Section:
    section = Section(f"Trial outcomes{suffix}")
    counts = stats.status_counts(run.trials)
    if counts.empty:
        return section.add(Text("No trials.", "missing"))
    return section.add(Table(counts.astype(str), "Share of complete, pruned, infeasible and "
                                                  "failed trials"),
                       figure_block(plots.status_share(run.trials), "trial outcomes", "", ""))
