"""Pareto dominance, fronts, hypervolume and MO-ASHA's promotion order: plain numpy, no Ray.

Every function takes points as rows of objective values and ``modes`` ("max" or "min", one per
objective). Internally each point is turned into a minimisation vector (a "max" objective is
negated), so "better" is always "smaller". A NaN (a diverged trial, a metric that failed to
compute) counts as the worst possible value of its objective: it never helps a point dominate,
and two NaNs are equal. Every result is a function of the values and their order only.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Objective = tuple[str, str]  # (metric, "max" or "min")
MODES = ("max", "min")


def check_modes(modes: Sequence[str], width: int | None = None) -> None:
    """One-line errors for a bad mode or a point of the wrong width."""
    bad = [mode for mode in modes if mode not in MODES]
    if bad or not modes:
        raise ValueError(f"objective modes must each be 'max' or 'min', got {list(modes)}")
    if width is not None and width != len(modes):
        raise ValueError(f"a point has {width} values for {len(modes)} objectives {list(modes)}")


def as_minimisation(points: Sequence[Sequence[float]], modes: Sequence[str]) -> np.ndarray:
    """An (n, k) float array where smaller is better in every column, NaN as +inf (worst)."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return np.zeros((0, len(modes)))
    if array.ndim != 2:
        raise ValueError(f"points must be a list of equal-length vectors, got shape {array.shape}")
    check_modes(modes, array.shape[1])
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in modes])
    array = array * signs
    array[np.isnan(array)] = np.inf
    return array


def _dominates_min(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """True when a is at least as good as b in every objective and better in one. Equal points
    dominate neither way."""
    pair = as_minimisation([a, b], modes)
    return _dominates_min(pair[0], pair[1])


def _sort_min(array: np.ndarray) -> list[list[int]]:
    """Non-dominated fronts of a minimisation array. One (n, n) matrix of who dominates whom,
    then fronts peeled off it: a rung of a few hundred trials is ranked at every result
    (MO-ASHA), and a pairwise Python loop took 0.2 s there (bench/lc_pareto.py replays)."""
    if len(array) == 0:
        return []
    # beats[j, i]: point j dominates point i (the rule of _dominates_min, for every pair)
    beats = (np.all(array[:, None, :] <= array[None, :, :], axis=2)
             & np.any(array[:, None, :] < array[None, :, :], axis=2))
    remaining = np.ones(len(array), dtype=bool)
    fronts = []
    while remaining.any():
        beaten = (beats & remaining[:, None]).any(axis=0)
        front = np.flatnonzero(remaining & ~beaten)  # ascending index order
        fronts.append([int(i) for i in front])
        remaining[front] = False
    return fronts


def non_dominated_sort(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[list[int]]:
    """Fronts of indices, front 0 (the non-dominated points) first, each front ascending. A
    point of front f is dominated by a point of front f-1 and by none of fronts >= f."""
    return _sort_min(as_minimisation(points, modes))


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, ascending (equal points are all kept)."""
    fronts = non_dominated_sort(points, modes)
    return fronts[0] if fronts else []


# ---- hypervolume ----------------------------------------------------------------------------
def hypervolume(points: Sequence[Sequence[float]], modes: Sequence[str],
                reference: Sequence[float]) -> float:
    """The volume dominated by the points and bounded by the reference point (exact). A point
    not strictly better than the reference in every objective adds nothing. Two objectives by
    a sweep over the sorted front; more by slicing along the last objective (exact, O(n^k):
    fine for the fronts here, < 100 points)."""
    array = as_minimisation(points, modes)
    ref = as_minimisation([reference], modes)[0]
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"the hypervolume reference must be finite, got {list(reference)}")
    inside = array[np.all(array < ref, axis=1)] if len(array) else array
    return float(_volume(inside, ref))


def _volume(array: np.ndarray, ref: np.ndarray) -> float:
    if len(array) == 0:
        return 0.0
    if array.shape[1] == 1:
        return float(ref[0] - array[:, 0].min())
    if array.shape[1] == 2:
        return _area(array, ref)
    # Slice along the last objective: between consecutive levels, the dominated region's
    # cross-section is the (k-1)-dimensional volume of the points at or below that level.
    order = np.argsort(array[:, -1], kind="stable")
    levels = list(array[order, -1]) + [ref[-1]]
    total = 0.0
    for count in range(1, len(order) + 1):
        height = levels[count] - levels[count - 1]
        if height > 0:
            total += height * _volume(array[order[:count], :-1], ref[:-1])
    return total


def _area(array: np.ndarray, ref: np.ndarray) -> float:
    """2-D: walk the points by the first objective; each adds the strip its second objective
    improves on the best seen so far."""
    total, best_y = 0.0, ref[1]
    for x, y in sorted(map(tuple, array)):
        if y < best_y:
            total += (ref[0] - x) * (best_y - y)
            best_y = y
    return total


# ---- MO-ASHA's promotion order ----------------------------------------------------------------
def rank_for_promotion(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """All indices, best first: front by front (non-dominated sorting), and inside a front the
    epsilon-net order of MO-ASHA (Schmucker et al. 2021), which spreads the kept points along
    the front instead of crowding one end of it.

    The epsilon net, as done here: each objective is scaled to [0, 1] over all the given points
    (0 = best finite value, 1 = worst; a constant objective is 0 everywhere; NaN is 1). Inside a
    front, the first pick is the point best on the FIRST objective (the primary metric, so its
    champion is always kept); then, repeatedly, the point whose Euclidean distance to the
    nearest point already picked in that front is largest. Every tie (equal values, equal
    distances) goes to the lower index. Duplicated points are therefore picked last in their
    front, in index order.
    """
    array = as_minimisation(points, modes)
    if len(array) == 0:
        return []
    scaled = _scaled(array)
    order = []
    for front in _sort_min(array):
        order.extend(_epsilon_net(scaled, front))
    return order


def _scaled(array: np.ndarray) -> np.ndarray:
    scaled = np.ones_like(array)  # +inf (NaN or inf) stays the worst value, 1
    for column in range(array.shape[1]):
        values = array[:, column]
        finite = np.isfinite(values)
        scaled[values == -np.inf, column] = 0.0
        if finite.any():
            low, high = values[finite].min(), values[finite].max()
            span = high - low
            scaled[finite, column] = (values[finite] - low) / span if span > 0 else 0.0
    return scaled


def _epsilon_net(scaled: np.ndarray, front: list[int]) -> list[int]:
    """``front`` (ascending indices) in epsilon-net order. The distances are numpy arrays: a
    front of a few hundred points (a busy rung, duplicated suggestions) is common in long
    sweeps, and point-by-point norms made this the cost of every MO-ASHA decision."""
    # min over a list keeps its first minimum: the lower index wins a tie
    first = min(front, key=lambda i: scaled[i, 0])
    picked = [first]
    rest = np.array([i for i in front if i != first], dtype=int)  # ascending
    nearest = np.linalg.norm(scaled[rest] - scaled[first], axis=1)
    while rest.size:
        chosen = int(np.argmax(nearest))  # the first of equal maxima: the lower index
        picked.append(int(rest[chosen]))
        rest, nearest = np.delete(rest, chosen), np.delete(nearest, chosen)
        if rest.size:
            nearest = np.minimum(nearest, np.linalg.norm(scaled[rest] - scaled[picked[-1]],
                                                         axis=1))
    return picked
