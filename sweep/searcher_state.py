"""What an extension changes in a saved SweepSearch (sweep/search.py), Ray's pickled searcher
state: kept apart from search.py, which imports the trainable and torch, so that sweep/extend.py
reads and writes the state without them."""
from __future__ import annotations


def take_back_early_tells(state: dict, total: int) -> list[int] | None:
    """Raise a saved SweepSearch state (its pickled ``__dict__``) to ``total`` trials, as
    sweep/extend.py does before Ray restores it. Returns the numbers of the trials whose tells
    it took back (held again, to be told when the lag rule allows, as a sweep of ``total``
    trials from the start would tell them), or None when the state predates the record of
    early tells (the extension then still runs every trial, but may suggest other ones).

    Why: with lag, the last ask of a sweep of K trials released every tell at once. A sweep of
    N > K trials asks trial K having told only trials 0..K-lag; trials K-lag+1..K-1 still run
    for TPE (its constant liar counts them as bad). Left told, TPE would model trial K from
    more trials than the N-trial sweep did, and the trials from K on would differ. The study
    must show those trials RUNNING again: the caller rewinds it (Optuna cannot untell)."""
    if total <= state.get("_total", 0):
        return []
    state["_total"] = total
    if not state.get("_lag"):
        return []  # async mode, or random search: tells were never held back
    if "_released_early" not in state:
        return None
    early = state["_released_early"]
    taken = sorted(early)
    if taken:
        state["_told"] = taken[0]  # a suffix of the told trials: numbers are told in order
        state["_ended"].update((number, early.pop(number)) for number in taken)
    return taken


def use_space(state: dict, distributions: dict, sampler) -> None:
    """A saved SweepSearch state (``__dict__``) that asks from another space: OptunaSearch asks
    ``study.ask(fixed_distributions=self._space)``, with ``self._sampler`` as the study's
    sampler. ``sampler`` is a fresh one (sweep/extend.py fresh_sampler says why)."""
    state["_space"] = distributions
    state["_sampler"] = sampler
    state["_ot_study"].sampler = sampler
