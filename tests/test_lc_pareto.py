"""The Pareto benchmark (issue 26, bench/lc_pareto.py) on its hand-made tiny table: fronts kept as
trials complete are the fronts sweep.pareto computes, the table's own front scores 1, a random
search that trains every configuration returns that front, every method's replay goes through
the product's MO-ASHA and multi-objective searcher, and both benchmarks run end to end."""
from __future__ import annotations

import random

import pytest

from bench.lc_pareto import (
    COST,
    DEV_METHODS,
    HEADLINE,
    HELDOUT_METHODS,
    METHODS,
    MODES,
    Front,
    ParetoTable,
    experiment_for,
    front_path,
    run,
    run_development,
    tiny_table,
    training_side,
)
from bench.lc_replay import key_of, simulate
from bench.registry import Context
from sweep.pareto import dominates, pareto_front


@pytest.fixture(scope="module")
def table() -> ParetoTable:
    return ParetoTable(tiny_table())


def test_a_front_kept_point_by_point_is_the_front_of_all_points():
    rng = random.Random(4)
    points = [(rng.choice([0.1, 0.2, 0.3, 0.4]), rng.choice([1.0, 2.0, 3.0])) for _ in range(40)]
    front = Front()
    for i, point in enumerate(points):
        front.add(i, point)
    assert sorted(front.keys) == pareto_front(points, MODES)  # equal points all kept
    assert not front.add(99, (0.0, 9.0))  # dominated: refused


def test_the_tables_own_front_scores_the_best_hypervolume(table):
    assert table.front_scores(table.exhaustive) == pytest.approx((1.0, 1.0))
    assert table.front_scores(list(table.configs)) == pytest.approx((1.0, 1.0))
    # the tiny table's front: lr 1e-3 at each width and batch size, four cost levels
    assert sorted(dict(k)["lr"] for k in table.exhaustive) == [1e-3] * 4
    seen, held = table.front_scores(table.exhaustive[:-1])
    assert seen < 1.0 and held < 1.0
    assert table.reference == pytest.approx([0.0, 1.1 * 0.3])  # 10 % past the costliest
    # a replayed trial reports the configuration's cost every epoch, as the objective
    run_ = table.run({"lr": 1e-3, "width": 8, "batch_size": 4})
    assert run_["epoch_s"] == [pytest.approx(0.3)] * 6
    assert training_side(table.settings) == 32


def test_random_search_given_the_whole_table_returns_its_front(table):
    horizon = 40 * table.max_epochs  # 40 trainings: every configuration of 12, several times
    path = front_path(table, "random", seed=0, concurrency=2, horizon_epochs=horizon,
                      until_epochs=horizon)
    assert path[-1][1:] == pytest.approx((1.0, 1.0))
    spent = [row[0] for row in path]
    assert spent == sorted(spent) and all(0 < row[1] <= 1.0 + 1e-12 for row in path)


@pytest.mark.parametrize("method", DEV_METHODS)
def test_every_methods_front_holds_no_dominated_configuration(table, method):
    horizon = 12 * table.max_epochs
    front = Front()
    front_path(table, method, seed=1, concurrency=2, horizon_epochs=horizon,
               until_epochs=horizon, front=front)
    # every complete trial of the same search, replayed again (the replay is deterministic)
    completed = []

    def collect(trace) -> bool:
        event = trace.events[-1]
        if event.epoch == table.max_epochs:
            key = key_of(table.snap(trace.trials[event.trial]["params"]))
            completed.append((key, (event.val_dice, table.train_s[key])))
        return False

    simulate(experiment_for(table, method, 1, 2), table, epoch_budget=horizon, until=collect)
    assert front.points, f"{method}: no trial completed in 12 trainings"
    for _, point in front.points:
        assert not any(dominates(other, point, MODES) for _, other in completed)
    expected = sorted(completed[i][0] for i in pareto_front([p for _, p in completed], MODES))
    assert sorted(front.keys) == expected


def test_the_replay_runs_the_products_multi_objective_scheduler_and_searcher(table):
    from sweep.mo_asha import OrderedMOASHA
    from sweep.search import make_scheduler

    experiment = experiment_for(table, "shipped", seed=0, concurrency=2)
    assert experiment.search.objective_list() == [("val_dice", "max"), (COST, "min")]
    scheduler = make_scheduler(experiment)
    assert isinstance(scheduler, OrderedMOASHA)
    assert scheduler.objectives == [("val_loss", "min"), (COST, "min")]  # the rung metric
    no_stop = experiment_for(table, "random", seed=0, concurrency=2)
    assert no_stop.scheduler.grace_period == table.max_epochs
    with pytest.raises(Exception, match="unknown Pareto method"):
        experiment_for(table, "grid", seed=0, concurrency=1)


def test_both_benchmarks_run_in_tiny_mode(tmp_path):
    dev = run_development(Context(tiny=True, work_dir=tmp_path / "dev"))
    assert {row["method"] for row in dev.figures["ranking"]} == set(DEV_METHODS)
    held = run(Context(tiny=True, work_dir=tmp_path / "held"))
    figures = held.figures
    assert set(figures["heldout_table_names"]) == {"unet_crisp", "unet_crop"}
    for name in figures["heldout_table_names"]:
        cells = figures["per_table"][name]["cells"]
        assert {cell.split("@")[0] for cell in cells} == set(HELDOUT_METHODS)
        assert {"shipped@1", "shipped@2", "random@1", "random@2"} <= set(cells)
        flops = figures["per_table"][name]["flops"]
        assert flops["cost_levels"] <= 2  # the width is the only thing FLOPs see
        assert flops["flops_per_image"]["8"] > 3 * flops["flops_per_image"]["4"]
    assert "ratio_vs_random" in figures and len(figures["ratio_vs_random_ci90"]) == 2
    assert figures["summary"]["unet_crisp/shipped@2"][HEADLINE]["times"]
    assert (tmp_path / "pareto_curves.png").exists()
    assert set(METHODS) >= set(HELDOUT_METHODS)
