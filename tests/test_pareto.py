"""sweep/pareto.py: dominance, fronts, exact hypervolume and MO-ASHA's promotion order (pure
numpy: no Ray, no torch)."""
from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from sweep.pareto import (
    dominates,
    hypervolume,
    non_dominated_sort,
    pareto_front,
    rank_for_promotion,
)

NAN = math.nan


# ---- dominance ------------------------------------------------------------------------------
def test_equal_points_dominate_neither_way():
    assert not dominates((0.8, 3.0), (0.8, 3.0), ["max", "min"])
    assert pareto_front([(0.8, 3.0), (0.8, 3.0), (0.7, 4.0)], ["max", "min"]) == [0, 1]


def test_dominance_follows_each_objectives_mode():
    # val_dice max, latency min: higher dice and lower latency is better
    assert dominates((0.9, 2.0), (0.8, 3.0), ["max", "min"])
    assert not dominates((0.8, 3.0), (0.9, 2.0), ["max", "min"])
    # the same numbers with the modes swapped: the other way round
    assert dominates((0.8, 3.0), (0.9, 2.0), ["min", "max"])
    # better in one, equal in the other: dominates; better in one, worse in the other: no
    assert dominates((0.9, 3.0), (0.8, 3.0), ["max", "min"])
    assert not dominates((0.9, 4.0), (0.8, 3.0), ["max", "min"])


def test_nan_is_the_worst_value_of_its_objective():
    assert dominates((0.1, 5.0), (NAN, 5.0), ["max", "min"])
    assert not dominates((NAN, 5.0), (0.1, 5.0), ["max", "min"])
    assert not dominates((NAN, 5.0), (NAN, 5.0), ["max", "min"])
    # a NaN dice with the best latency is still a trade-off nobody dominates
    assert pareto_front([(0.9, 5.0), (NAN, 1.0)], ["max", "min"]) == [0, 1]


def test_bad_modes_and_widths_are_one_line_errors():
    with pytest.raises(ValueError, match="'max' or 'min'"):
        dominates((1, 2), (2, 1), ["max", "maximize"])
    with pytest.raises(ValueError, match="3 values for 2 objectives"):
        pareto_front([(1, 2, 3)], ["max", "min"])


# ---- non-dominated sorting --------------------------------------------------------------------
def test_fronts_peel_in_order_with_ascending_indices():
    points = [(1, 5), (3, 3), (2, 2), (5, 1), (4, 4), (1, 1), (5, 5)]  # both minimised
    fronts = non_dominated_sort(points, ["min", "min"])
    assert fronts == [[5], [0, 2, 3], [1], [4], [6]]
    assert pareto_front(points, ["min", "min"]) == [5]
    assert non_dominated_sort([], ["min", "min"]) == []


def test_sorting_is_a_function_of_the_values_only():
    rng = random.Random(3)
    points = [(rng.randint(0, 5), rng.randint(0, 5), rng.random()) for _ in range(40)]
    modes = ["max", "min", "max"]
    fronts = non_dominated_sort(points, modes)
    assert fronts == non_dominated_sort(list(points), modes)
    assert sorted(i for front in fronts for i in front) == list(range(40))
    # a permutation of the points permutes the fronts, nothing else
    order = list(range(40))
    rng.shuffle(order)
    shuffled = non_dominated_sort([points[i] for i in order], modes)
    assert [sorted(order[i] for i in front) for front in shuffled] == fronts
    # each point of front f is dominated by one of front f-1, by none of fronts >= f
    for f, front in enumerate(fronts):
        for i in front:
            later = [j for g in fronts[f:] for j in g]
            assert not any(dominates(points[j], points[i], modes) for j in later)
            if f:
                assert any(dominates(points[j], points[i], modes) for j in fronts[f - 1])


# ---- hypervolume ----------------------------------------------------------------------------
def test_hypervolume_of_two_objectives_by_hand():
    # dice max, latency min, reference (dice 0, latency 10): the union of the boxes
    # [0, 0.8] x [5, 10] (area 4) and [0, 0.7] x [3, 10] (area 4.9), overlapping in
    # [0, 0.7] x [5, 10] (area 3.5): 5.4
    points = [(0.8, 5.0), (0.7, 3.0)]
    assert hypervolume(points, ["max", "min"], [0.0, 10.0]) == pytest.approx(5.4)
    # a dominated point, a duplicate and a point beyond the reference add nothing
    more = points + [(0.6, 6.0), (0.8, 5.0), (-0.1, 1.0)]
    assert hypervolume(more, ["max", "min"], [0.0, 10.0]) == pytest.approx(5.4)
    assert hypervolume([], ["max", "min"], [0.0, 10.0]) == 0.0


def test_hypervolume_of_three_objectives_by_hand():
    # [1,2]^3 (1) and [0,2]x[1.5,2]x[1.5,2] (0.5), overlapping in [1,2]x[1.5,2]^2 (0.25)
    points = [(1, 1, 1), (0, 1.5, 1.5)]
    assert hypervolume(points, ["min"] * 3, [2, 2, 2]) == pytest.approx(1.25)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_counts_the_dominated_unit_cells(dims):
    """Integer points, reference 6 in every objective: the exact volume is the number of unit
    cells whose lower corner some point weakly dominates."""
    rng = random.Random(dims)
    points = [tuple(rng.randint(0, 5) for _ in range(dims)) for _ in range(12)]
    cells = sum(any(all(p[k] <= c[k] for k in range(dims)) for p in points)
                for c in itertools.product(range(6), repeat=dims))
    assert hypervolume(points, ["min"] * dims, [6] * dims) == pytest.approx(cells)
    # the same points maximised, mirrored: the same volume
    mirrored = [tuple(-v for v in p) for p in points]
    assert hypervolume(mirrored, ["max"] * dims, [-6] * dims) == pytest.approx(cells)


# ---- promotion order (epsilon net) ------------------------------------------------------------
def test_promotion_order_spreads_along_the_front():
    """dice max, latency min. Front 0 = 0, 1, 3, 4; 2 is dominated (by 1 and 4). The net starts
    at the best dice (3), then the point farthest from it (4, the fastest), then the one
    farthest from both (1), then 0, right beside 3. Scaled: dice over 0.4..0.9, latency 1..10."""
    points = [(0.85, 9.0), (0.7, 5.0), (0.4, 8.0), (0.9, 10.0), (0.5, 1.0)]
    assert non_dominated_sort(points, ["max", "min"]) == [[0, 1, 3, 4], [2]]
    assert rank_for_promotion(points, ["max", "min"]) == [3, 4, 1, 0, 2]


def test_promotion_ties_go_to_the_lower_index():
    # both minimised: all four non-dominated; 2 is best on the first objective, 3 farthest
    # from it, then 0 and 1 (equal points, equal distances): index order
    points = [(1, 1), (1, 1), (0, 2), (2, 0)]
    assert rank_for_promotion(points, ["min", "min"]) == [2, 3, 0, 1]
    assert rank_for_promotion([(0, 1), (0, 1)], ["min", "min"]) == [0, 1]
    # a constant objective scales to 0, not to a division by zero
    assert rank_for_promotion([(3, 5), (1, 5), (2, 5)], ["min", "min"]) == [1, 2, 0]


def test_promotion_order_is_a_total_order_front_by_front():
    rng = np.random.default_rng(0)
    points = rng.random((30, 3)).tolist()
    points[7][1] = NAN
    modes = ["max", "min", "min"]
    order = rank_for_promotion(points, modes)
    assert sorted(order) == list(range(30)) and order == rank_for_promotion(points, modes)
    start = 0
    for front in non_dominated_sort(points, modes):  # front 0's points first, and so on
        assert sorted(order[start:start + len(front)]) == front
        start += len(front)
