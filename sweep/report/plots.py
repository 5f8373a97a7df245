"""The report's figures. Each function returns a matplotlib Figure, or None when the run lacks
the data (the caller says so in words). Figures are built without pyplot: no global state, no
display, safe inside a Ray driver."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from sweep.report.load import RunData
from sweep.report.space import ParamSpec

STATUS_COLOURS = {"complete": "tab:blue", "pruned": "tab:orange", "infeasible": "tab:red",
                  "failed": "black", "running": "tab:green", "unknown": "tab:gray"}
DPI = 100


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def scored(run: RunData) -> pd.DataFrame:
    return run.trials.dropna(subset=["best_val_dice"]) if not run.trials.empty else run.trials


def learning_curves(run: RunData, top: int = 6) -> Figure | None:
    best = scored(run).head(top)
    if best.empty:
        return None
    figure = Figure(figsize=(11, 4))
    dice_ax, loss_ax = figure.subplots(1, 2)
    for _, trial in best.iterrows():
        rows = run.history[run.history.trial_id == trial.trial_id].sort_values("epoch")
        style = "-" if trial.status == "complete" else "--"
        label = f"{trial.trial_id} ({trial.status}, best {trial.best_val_dice:.3f})"
        dice_ax.plot(rows.epoch, rows.val_dice, style, marker="o", ms=3, label=label)
        loss_ax.plot(rows.epoch, rows.val_loss, style, marker="o", ms=3)
    dice_ax.set(title=f"val_dice, top {len(best)} trials", xlabel="epoch", ylabel="val_dice")
    loss_ax.set(title="val_loss (dashed: stopped early)", xlabel="epoch", ylabel="val_loss")
    for ax in (dice_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    # Below the axes: inside, it hides the late epochs where the curves matter most.
    figure.legend(*dice_ax.get_legend_handles_labels(), loc="upper center", ncol=3, fontsize=8,
                  bbox_to_anchor=(0.5, 0.0), frameon=False)
    figure.tight_layout()
    return figure


def params_vs_dice(run: RunData) -> Figure | None:
    trials, params = scored(run), run.params
    if trials.empty or not params:
        return None
    columns = min(3, len(params))
    rows = math.ceil(len(params) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, params):
        scatter_param(ax, trials, name, run.space.get(name))
    for ax in axes[len(params):]:
        ax.set_visible(False)
    handles = [ax.scatter([], [], color=c, label=s) for s, c in STATUS_COLOURS.items()
               if s in set(trials.status)]
    figure.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
                  bbox_to_anchor=(0.5, 1.04))
    figure.tight_layout()
    return figure


def scatter_param(ax, trials: pd.DataFrame, name: str, spec: ParamSpec | None) -> None:
    values = trials[f"config/{name}"]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        x = values.astype(float)
    else:  # categories on evenly spaced positions, labelled
        labels = sorted(values.astype(str).unique())
        x = values.astype(str).map({label: i for i, label in enumerate(labels)})
        ax.set_xticks(range(len(labels)), labels)
    colours = trials.status.map(STATUS_COLOURS).fillna("tab:gray")
    ax.scatter(x, trials.best_val_dice, c=colours, s=30, alpha=0.8)
    ax.scatter(x.iloc[:1], trials.best_val_dice.iloc[:1], marker="*", s=220,
               facecolors="none", edgecolors="crimson", label="best")
    if numeric and spec is not None and spec.kind == "choice":
        ax.set_xticks(sorted(set(spec.choices)))  # batch_size 2/4/8, not 2.0, 2.5, ...
    if numeric and spec is not None and spec.numeric_range:
        for bound in spec.numeric_range:  # the searched range, to see edges at a glance
            ax.axvline(bound, color="gray", ls=":", lw=1)
    if numeric and (name == "lr" or (spec is not None and spec.log)):
        ax.set_xscale("log")
    ax.set(xlabel=name, ylabel="best val_dice")
    ax.grid(alpha=0.3)


def importance_bars(importances: dict[str, float], metric: str = "val_dice") -> Figure | None:
    if not importances:
        return None
    names = list(importances)[::-1]  # largest on top
    figure = Figure(figsize=(7, 0.5 * len(names) + 1.2))
    ax = figure.subplots()
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    for y, name in enumerate(names):
        ax.text(importances[name], y, f" {importances[name]:.2f}", va="center", fontsize=9)
    ax.set(xlabel=f"importance for {metric} (PED-ANOVA, sums to 1)", xlim=(0, 1.1))
    ax.grid(axis="x", alpha=0.3)
    return figure


def parallel_coordinates(run: RunData) -> Figure | None:
    trials, params = scored(run), run.params
    if len(trials) < 2 or not params:
        return None
    axes_names = [*params, "best_val_dice"]
    scaled, ticks = {}, {}
    for name in axes_names:
        column = trials[name] if name == "best_val_dice" else trials[f"config/{name}"]
        spec = run.space.get(name)
        log = name == "lr" or (spec is not None and spec.log)
        bounds = spec.numeric_range if spec is not None else None
        scaled[name], ticks[name] = normalise(column, log, bounds)
    figure = Figure(figsize=(max(6, 1.9 * len(axes_names)), 4.2))
    ax = figure.subplots()
    dice = trials.best_val_dice
    norm = Normalize(dice.min(), dice.max())
    cmap = colormaps["viridis"]
    for i in np.argsort(dice.to_numpy()):  # best drawn last, on top
        ys = [scaled[n].iloc[i] for n in axes_names]
        early = trials.status.iloc[i] != "complete"
        ax.plot(range(len(axes_names)), ys, color=cmap(norm(dice.iloc[i])),
                ls="--" if early else "-", lw=1.2 if early else 2, alpha=0.85)
    for x, name in enumerate(axes_names):
        ax.axvline(x, color="black", lw=0.8)
        for y, text in ticks[name]:
            ax.text(x + 0.03, y, text, fontsize=8, va="center")
    ax.set_xticks(range(len(axes_names)), axes_names)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes_names) - 0.5)
    ax.set_title("one line per trial (dashed: not complete)", fontsize=10)
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="best val_dice")
    return figure


def normalise(column: pd.Series, log: bool, bounds: tuple[float, float] | None = None
              ) -> tuple[pd.Series, list[tuple[float, str]]]:
    """Map a column onto [0, 1] for a parallel axis (the searched range when known, so values
    near an edge show as such); return tick positions and labels."""
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if not numeric:
        labels = sorted(column.astype(str).unique())
        spread = max(len(labels) - 1, 1)
        positions = {label: i / spread for i, label in enumerate(labels)}
        return column.astype(str).map(positions), [(positions[x], x) for x in labels]
    values = column.astype(float)
    low, high = bounds if bounds else (values.min(), values.max())
    low, high = min(low, values.min()), max(high, values.max())
    log = log and low > 0
    transform = np.log10 if log else (lambda v: v)
    span = (transform(high) - transform(low)) or 1.0
    scaled = (transform(values) - transform(low)) / span
    return scaled, [(0.0, tick_label(low)), (1.0 if high > low else 0.0, tick_label(high))]


def tick_label(value: float) -> str:
    """9999 rather than 1e+04 for a seed; 0.0001 stays short."""
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def throughput(run: RunData) -> Figure | None:
    trials = run.trials.dropna(subset=["samples_per_s"]) if not run.trials.empty else run.trials
    present = [p for p in ("num_workers", "batch_size") if f"config/{p}" in trials]
    if trials.empty or not present:
        return None
    figure = Figure(figsize=(4.6 * len(present), 3.4))
    jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(trials))  # unstack equal x
    for ax, name in zip(np.atleast_1d(figure.subplots(1, len(present))), present):
        # Trials that did not search it (a dimension an extension took out) are not drawn.
        searched = trials[f"config/{name}"].notna().to_numpy()
        shown = trials[searched]
        colours = shown.status.map(STATUS_COLOURS).fillna("tab:gray")
        x = shown[f"config/{name}"].astype(float)
        spread = (x.max() - x.min()) or 1.0
        ax.scatter(x + jitter[searched] * spread, shown.samples_per_s, c=colours, s=30,
                   alpha=0.8)
        means = shown.groupby(f"config/{name}").samples_per_s.mean()
        ax.plot(means.index, means.to_numpy(), color="black", lw=1, marker="_", ms=16,
                label="mean")
        ax.set(xlabel=name, ylabel="training samples/s")
        ax.set_xticks(sorted(shown[f"config/{name}"].unique()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def status_share(trials: pd.DataFrame) -> Figure | None:
    if trials.empty:
        return None
    counts = trials.status.value_counts()
    counts = counts[[s for s in STATUS_COLOURS if s in counts]
                    + [s for s in counts.index if s not in STATUS_COLOURS]]
    figure = Figure(figsize=(7, 0.45 * len(counts) + 1.1))
    ax = figure.subplots()
    names = list(counts.index)[::-1]
    ax.barh(names, [counts[n] for n in names],
            color=[STATUS_COLOURS.get(n, "tab:gray") for n in names])
    for y, name in enumerate(names):
        ax.text(counts[name], y, f" {counts[name]} ({counts[name] / counts.sum():.0%})",
                va="center", fontsize=9)
    ax.set(xlabel="trials", xlim=(0, counts.max() * 1.3))
    ax.xaxis.get_major_locator().set_params(integer=True)
    return figure


def best_curves(runs: list[RunData]) -> Figure | None:
    """Several runs: the best trial's val_dice curve of each, on one axis."""
    figure = Figure(figsize=(7, 3.8))
    ax = figure.subplots()
    drawn = 0
    for run in runs:
        best = scored(run).head(1)
        if best.empty:
            continue
        rows = run.history[run.history.trial_id == best.trial_id.iloc[0]].sort_values("epoch")
        ax.plot(rows.epoch, rows.val_dice, marker="o", ms=3,
                label=f"{run.name}: {best.trial_id.iloc[0]} ({best.best_val_dice.iloc[0]:.3f})")
        drawn += 1
    if not drawn:
        return None
    ax.set(xlabel="epoch", ylabel="val_dice", title="best trial of each run")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def dice_by_trial(run: RunData, extended_at: list[int]) -> Figure | None:
    """Best val_dice of each trial by its number, the best so far as a line, and a dashed line
    where each extension began (sweep/report/history.py). Trials outside the space a later
    extension searched are drawn hollow."""
    trials = scored(run)
    if trials.empty or "number" not in trials or trials.number.isna().all():
        return None
    trials = trials.dropna(subset=["number"]).sort_values("number")
    figure = Figure(figsize=(8, 3.6))
    ax = figure.subplots()
    outside = trials.get("outside_space", pd.Series("", index=trials.index)).astype(bool)
    for status, group in trials.groupby("status"):
        colour = STATUS_COLOURS.get(status, "tab:gray")
        inside = ~outside[group.index]
        ax.scatter(group.number[inside], group.best_val_dice[inside], s=22, color=colour,
                   label=status)
        if (~inside).any():
            ax.scatter(group.number[~inside], group.best_val_dice[~inside], s=22,
                       facecolors="none", edgecolors=colour)
    ax.plot(trials.number, trials.best_val_dice.cummax(), color="black", lw=1, alpha=0.6,
            drawstyle="steps-post", label="best so far")
    for at in extended_at:
        ax.axvline(at - 0.5, color="tab:purple", ls="--", lw=1)
        ax.text(at - 0.5, 1.0, f" extended at {at}", color="tab:purple", fontsize=8,
                va="top", transform=ax.get_xaxis_transform())
    ax.set(xlabel="trial number", ylabel="best val_dice")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


STAIRCASE = "front staircase"  # the gid of the line joining the front's trials


def pareto_fronts(points: pd.DataFrame, objectives: list[tuple[str, str]]) -> Figure | None:
    """The primary objective against each other objective, one axis each. ``points``: one row
    per complete trial (sweep/report/pareto.py): its objectives, ``number``, ``on_front`` and
    the primary's lowest and highest seed (``low``, ``high``). Front trials are strong and
    numbered, joined by a step line through those the front keeps in that view (all of them
    with two objectives); dominated trials are faded; the seeds' spread is an error bar."""
    if points.empty:
        return None
    (primary, primary_mode), others = objectives[0], objectives[1:]
    figure = Figure(figsize=(5.4 * len(others), 4.2))
    front = points[points.on_front]
    for ax, (cost, mode) in zip(np.atleast_1d(figure.subplots(1, len(others))), others):
        for group, label, colour, alpha in ((points[~points.on_front], "dominated", "tab:gray",
                                             0.35), (front, "Pareto front", "tab:blue", 1.0)):
            if group.empty:
                continue
            ax.errorbar(group[cost], group[primary], yerr=seed_bars(group, primary),
                        fmt="none", ecolor=colour, alpha=alpha, capsize=3, lw=1)
            ax.scatter(group[cost], group[primary], s=40, color=colour, alpha=alpha,
                       label=label, zorder=3)
        kept = front_in_view(front, (primary, primary_mode), (cost, mode))
        # The staircase of what the front attains: hold a value until the next cost.
        ax.plot(kept[cost], kept[primary], color="tab:blue", lw=1.2, gid=STAIRCASE,
                drawstyle="steps-post" if mode == "min" else "steps-pre")
        for _, trial in front.dropna(subset=["number"]).iterrows():
            ax.annotate(f"#{int(trial['number'])}", (trial[cost], trial[primary]), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
        values = points[cost].to_numpy(dtype=float)
        if (values > 0).all() and values.max() >= 10 * values.min():  # FLOPs span decades
            ax.set_xscale("log")
        ax.set(xlabel=f"{cost} ({mode})", ylabel=f"{primary} ({primary_mode})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def seed_bars(group: pd.DataFrame, primary: str) -> np.ndarray | None:
    """Asymmetric error bars from each trial's lowest to highest seed (none with one seed)."""
    if group[["low", "high"]].isna().all().all():
        return None
    below = (group[primary] - group["low"]).to_numpy(dtype=float)
    above = (group["high"] - group[primary]).to_numpy(dtype=float)
    return np.nan_to_num(np.vstack([below, above]), nan=0.0)


def front_in_view(front: pd.DataFrame, primary: tuple[str, str],
                  cost: tuple[str, str]) -> pd.DataFrame:
    """The front trials no other front trial beats on these two objectives, by cost: with more
    than two objectives a front trial can be dominated in one view (it wins on a third)."""
    from sweep.pareto import pareto_front  # numpy only

    pairs = front[[primary[0], cost[0]]].to_numpy(dtype=float)
    kept = front.iloc[pareto_front(pairs, [primary[1], cost[1]])] if len(front) else front
    return kept.sort_values(cost[0], kind="stable")
