"""MO-ASHA: successive halving that keeps the trials whose objective VECTORS rank high at a rung.

Ray's ASHA compares one metric at a rung (ray-project/ray #8018). Here a rung records each
trial's objectives (e.g. val_dice max, latency_ms min) and the keep/stop rule is MO-ASHA's
(Schmucker et al. 2021): order the rung's trials by ``sweep.pareto.rank_for_promotion``
(non-dominated fronts, then the epsilon net inside a front) and keep a trial if it is among the
first ceil(n / reduction_factor) of the n trials compared, itself included. Ties go to the
earlier trial (the lower trial number), so equal vectors never depend on timing.

Two modes, as for one metric (sweep/search.py make_scheduler):
- ``OrderedMOASHA`` (reproducible): OrderedASHA's ordering, with only its comparison replaced:
  trial i is ranked against trials 0..i-1 of its bracket once each has reached the rung or
  ended, whatever the order the results arrived in.
- ``AsyncMOASHA``: a trial reaching a rung is ranked against whatever its bracket recorded
  there so far (Ray's ASHA does the same with one metric); brackets are by trial number too.

With ONE objective both keep ASHA's own quantile rule: a rank rule counts trials and cannot
reproduce the interpolated quantile's boundary, and one objective must mean today's behaviour.

How pruned trials reach Optuna (checked on the installed optuna 5.0.0, a study with two
directions, samplers TPE, NSGA-II and random): ``study.tell(trial, state=TrialState.PRUNED)``
is accepted (with no values: values with PRUNED raise ValueError), the trial is stored PRUNED
with values None, and sampling continues. ``trial.report`` and ``trial.should_prune`` raise
NotImplementedError for multi-objective studies, so no intermediate values exist. TPE ranks a
pruned trial after every complete one (score (1, 0.0)): it joins the "good" group only while
there are fewer complete trials than that group holds. NSGA-II counts COMPLETE trials only: a
pruned trial does not fill its generation, so pruning makes generations take more trials.
Ray's OptunaSearch skips ``report`` for a list of metrics, but tells a trial stopped by the
scheduler COMPLETE with its last result's values (PRUNED only when there is no result; a None
in the list makes ``tell`` raise, which Ray only logs), so the searcher (SweepSearch) tells a
stopped trial PRUNED itself, and must not call ``report`` before it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.ordered_asha import OrderedASHA, quantile_keeps, rung_levels
from sweep.pareto import MODES, Objective, rank_for_promotion
from sweep.rundir import read_result_rows_at
from sweep.trials import trial_number


# ---- objectives and the rule (no Tune state) -------------------------------------------------
def as_objectives(items: Iterable) -> list[Objective]:
    """(metric, mode) pairs from pairs or one-key dicts ({"val_dice": "max"}, as
    search.objectives lists them); a one-line error for anything else or a bad mode."""
    objectives = []
    for item in items or []:
        if isinstance(item, dict) and len(item) == 1:
            (metric, mode), = item.items()
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            metric, mode = item
        else:
            raise ValueError(f"an objective is (metric, mode) or {{metric: mode}}, not {item!r}")
        if mode not in MODES or not isinstance(metric, str) or not metric:
            raise ValueError(f"objective {metric!r}: mode must be 'max' or 'min', got {mode!r}")
        objectives.append((metric, mode))
    if not objectives:
        raise ValueError("MO-ASHA needs at least one objective (metric, mode)")
    if len({metric for metric, _ in objectives}) < len(objectives):
        raise ValueError(f"an objective is named twice: {[m for m, _ in objectives]}")
    return objectives


def rung_objectives(objectives: Iterable, rung_metric: str,
                    rung_metrics: dict[str, str]) -> list[Objective]:
    """What the rungs compare: the objectives, but a primary objective that is one of the
    loop's scores (``rung_metrics``: val_dice, val_iou, val_loss) is compared as
    scheduler.metric, the substitution a single-objective sweep makes too: early val_dice is
    mostly 0 (the thin cracks are not found yet), so ranking rung 1 by it would leave the
    decision to the cost objectives alone."""
    pairs = as_objectives(objectives)
    others = [metric for metric, _ in pairs[1:]]
    if pairs[0][0] in rung_metrics and rung_metric not in others:
        pairs[0] = (rung_metric, rung_metrics[rung_metric])
    return pairs


def objective_vector(result: dict, objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The result's objective values, as reported (not signed). A missing one is an error: a
    rung without it would rank the trial on the other objectives alone. Asked only of a
    result that reaches a rung: one past them all (the last result a resumed trial says
    again, trainable.report_last_result) decides nothing and needs none."""
    missing = [metric for metric, _ in objectives if result.get(metric) is None]
    if missing:
        raise ValueError(f"MO-ASHA: the result of epoch {result.get('epoch')} has no "
                         f"{', '.join(missing)} (objectives: {[m for m, _ in objectives]})")
    return tuple(float(result[metric]) for metric, _ in objectives)


def keeps_at_rung(points: Sequence[Sequence[float]], index: int, modes: Sequence[str],
                  reduction_factor: float) -> bool:
    """MO-ASHA's rule: ``points[index]`` continues if it is among the first
    ceil(len(points) / reduction_factor) points by ``rank_for_promotion``. Give the points in
    trial-number order: ties then go to the earlier trial. Rounding up keeps the best of
    fewer than reduction_factor points."""
    keep = math.ceil(len(points) / reduction_factor)
    return rank_for_promotion(points, modes).index(index) < keep


def one_objective_keeps(own, peers, objective: Objective, reduction_factor: float) -> bool:
    """One objective: OrderedASHA's (= Ray ASHA's) quantile rule on the same signed values."""
    sign = 1.0 if objective[1] == "max" else -1.0
    return quantile_keeps(sign * own[0], [sign * p[0] for p in peers], reduction_factor)


def bracket_rungs(grace_period: float, reduction_factor: float, max_t: float,
                  brackets: int) -> list[list[float]]:
    """Bracket b's rungs start at grace_period * reduction_factor**b (as in OrderedASHA)."""
    rungs = rung_levels(grace_period, reduction_factor, max_t)
    return [[r for r in rungs if r >= grace_period * reduction_factor ** b]
            for b in range(max(1, brackets))]


# ---- reproducible mode -------------------------------------------------------------------------
class OrderedMOASHA(OrderedASHA):
    """OrderedASHA over objective vectors (see the module docstring). ``metric`` (Tune's check
    that results carry it) is the first objective."""

    def __init__(self, *, objectives: Iterable, max_t: int, grace_period: int,
                 reduction_factor: float, time_attr: str = "epoch", brackets: int = 1):
        self.objectives = as_objectives(objectives)
        metric, mode = self.objectives[0]
        super().__init__(metric=metric, mode=mode, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, time_attr=time_attr,
                         brackets=brackets)

    def _rung_value(self, result: dict) -> tuple[float, ...]:
        return objective_vector(result, self.objectives)

    def _keeps(self, value, peers: list) -> bool:
        if len(self.objectives) == 1:
            return one_objective_keeps(value, peers, self.objectives[0], self._rf)
        # the peers are the earlier trials, in number order: ``value`` is the latest
        return keeps_at_rung([*peers, value], len(peers), self.modes, self._rf)

    @property
    def modes(self) -> list[str]:
        return [mode for _, mode in self.objectives]

    def debug_string(self) -> str:
        return f"OrderedMOASHA on {self.objectives}: " + super().debug_string()


# ---- async mode --------------------------------------------------------------------------------
class AsyncMOASHA(FIFOScheduler):
    """Async successive halving over objective vectors: a trial reaching a rung is ranked
    against the vectors its bracket recorded there so far, in whatever order they came.
    A restored trial (resume, extension) replays its result.json into its rungs, as
    sweep/resumed_asha.py does for Ray's ASHA, so pruning still compares every trial."""

    def __init__(self, *, objectives: Iterable, max_t: int, grace_period: int,
                 reduction_factor: float, time_attr: str = "epoch", brackets: int = 1):
        super().__init__()
        self.objectives = as_objectives(objectives)
        self._metric = self.objectives[0][0]  # TrialScheduler.metric: Tune checks results have it
        self._time_attr, self._rf = time_attr, reduction_factor
        self.bracket_rungs = bracket_rungs(grace_period, reduction_factor, max_t, brackets)
        # per bracket, per rung: {trial id: (trial number, objective vector)}
        self._rung_records: list[dict[float, dict[str, tuple[int, tuple]]]] = [
            {rung: {} for rung in rungs} for rungs in self.bracket_rungs]
        self._numbers: dict[str, int] = {}

    _supports_buffered_results = False  # one result at a time: no epoch runs past a rung

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # the objectives are fixed at construction

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._numbers[trial.trial_id] = trial_number(trial)
        if getattr(trial, "has_reported_at_least_once", False) and trial.path:
            filesystem = getattr(getattr(trial, "storage", None), "storage_filesystem", None)
            for row in read_result_rows_at(trial.path, filesystem):
                self._decide(trial, row)  # its decisions then were taken; only record them

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        return self._decide(trial, result)

    def debug_string(self) -> str:
        return f"AsyncMOASHA on {self.objectives}: rungs {self.bracket_rungs}"

    def _decide(self, trial: Trial, result: dict) -> str:
        """Record the rung this result reaches first, and keep or stop the trial there."""
        epoch = result.get(self._time_attr)
        if epoch is None:
            return TrialScheduler.CONTINUE
        number = self._numbers.setdefault(trial.trial_id, trial_number(trial))
        records = self._rung_records[number % len(self.bracket_rungs)]
        rung = next((r for r in reversed(list(records))
                     if epoch >= r and trial.trial_id not in records[r]), None)
        if rung is None:
            return TrialScheduler.CONTINUE
        vector = objective_vector(result, self.objectives)
        peers = [value for _, value in records[rung].values()]
        records[rung][trial.trial_id] = (number, vector)
        if not peers:
            return TrialScheduler.CONTINUE
        if len(self.objectives) == 1:
            keeps = one_objective_keeps(vector, peers, self.objectives[0], self._rf)
        else:
            # in trial-number order, so that ties go to the earlier trial here too
            ranked = sorted(records[rung].items(), key=lambda item: item[1][0])
            index = [trial_id for trial_id, _ in ranked].index(trial.trial_id)
            keeps = keeps_at_rung([value for _, (_, value) in ranked], index,
                                  [mode for _, mode in self.objectives], self._rf)
        return TrialScheduler.CONTINUE if keeps else TrialScheduler.STOP
