"""Side-by-side timing: alternate the sides, repeat, compare medians."""
from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def interleave(sides: dict[str, Callable[[int], T]], repeats: int) -> dict[str, list[T]]:
    """Run every side ``repeats`` times, alternating A B, B A, A B ... so that neither side
    always goes first (a warm cache or a noisy neighbour then hits both alike). Each callable
    gets its repeat number."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    names = list(sides)
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_ in range(repeats):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(sides[name](round_))
    return results


def median(values: list[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def spread(values: list[float]) -> dict:
    """Median with the range, for the record: a wide range says the machine was noisy."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)),
            "n": len(values)}


def ratio(numerator: float, denominator: float) -> float:
    if denominator <= 0:
        raise ValueError(f"ratio with a non-positive denominator ({denominator})")
    return numerator / denominator


def steady_throughput(samples_per_epoch: int, epoch_ends: list[float], start: float) -> float:
    """Samples/s over the epochs after the first, whose time also holds one-off costs (kernel
    selection, allocator warm-up, first-touch of the data); with one epoch, over that one."""
    if not epoch_ends:
        raise ValueError("no epochs were timed")
    if len(epoch_ends) == 1:
        return samples_per_epoch / (epoch_ends[0] - start)
    return samples_per_epoch * (len(epoch_ends) - 1) / (epoch_ends[-1] - epoch_ends[0])
