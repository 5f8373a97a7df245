"""The `warm-start` benchmark (bench/lc_warm.py) in tiny mode, on the hand-made table of
tests/test_lc_search.py for every problem name (seconds, no table to generate): every pair
replays a cold and a warm search per seed, the warm study holds exactly the source's finished
trials as the product would tell them, and the same seed gives the same search."""
from __future__ import annotations

import optuna

from bench import lc_warm
from bench.lc_methods import experiment_for, shipped_name
from bench.registry import Context
from sweep.warm_start import WARM_ATTR
from tests.test_lc_search import held_out_table


def test_warm_start_benchmark_tiny_mode_replays_both_sides_of_every_pair(monkeypatch,
                                                                          tmp_path):
    table = held_out_table()
    monkeypatch.setattr(lc_warm, "tables_for", lambda ctx, names: {n: table for n in names})
    outcome = lc_warm.run(Context(tiny=True, work_dir=tmp_path))
    figures = outcome.figures
    assert set(figures["pairs"]) == {"unet_crisp<-unet_thin", "unet_crop<-unet_thin",
                                     "unet_crisp<-unet_crisp"}
    for entry in figures["pairs"].values():
        assert len(entry["cold"]) == len(entry["warm"]) == len(figures["seeds"]) == 2
        assert all(told > 0 for told in entry["told"])  # the source had finished trials
    # a target's cold searches are the same seeded searches for each of its pairs
    assert figures["pairs"]["unet_crisp<-unet_thin"]["cold"] == \
        figures["pairs"]["unet_crisp<-unet_crisp"]["cold"]
    assert figures["ratios"]["neighbour"]["cells"] == 2
    assert figures["ratios"]["same"]["cells"] == 1
    assert outcome.headline.startswith("warm-started from a 4-trial search of unet_thin")
    # the same seed gives the same search (the figures are functions of the seeds)
    horizon = lc_warm.SETUP["tiny"]["horizon"] * table.max_epochs
    assert lc_warm.time_to_target(table, figures["method"], figures["seeds"][0], horizon) == \
        figures["pairs"]["unet_crop<-unet_thin"]["cold"][0]


def test_the_warm_study_holds_the_source_s_finished_trials_as_the_product_tells_them():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table, method = held_out_table(), shipped_name()
    source = lc_warm.source_trials(table, method, seed=1, trials=4)
    finished = [t for t in source if t.state.name in ("COMPLETE", "PRUNED")]
    experiment = experiment_for(table, method, 7, lc_warm.CONCURRENCY)
    storage, told = lc_warm.warm_study(experiment, source)
    trials = optuna.load_study(study_name=experiment.name, storage=storage).trials
    assert told == len(trials) == len(finished) > 0
    assert [(t.params, t.values, t.intermediate_values) for t in trials] == [
        (t.params, t.values, t.intermediate_values) for t in finished]
    assert all(t.user_attrs[WARM_ATTR]["number"] == s.number for t, s in zip(trials, finished))
    assert all(t.distributions == {k: experiment.distributions()[k] for k in t.params}
               for t in trials)
