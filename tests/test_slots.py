"""Slots (issue 16): what a trial reserves, the speed probe that fixes num_workers for every
trial, and the timeline figures (effective concurrency, start-up, gaps). No Ray here."""
from __future__ import annotations

from pathlib import Path

import pytest

from sweep.experiment import load_experiment
from sweep.search import trial_resources
from sweep.speed import apply, candidates, choose, run_probe, worker_cpus
from sweep.timeline import trial_timeline

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SMOKE = EXPERIMENTS / "smoke.yaml"


def test_a_trial_reserves_its_cpus_plus_the_measured_share_of_each_worker():
    experiment = load_experiment(SMOKE, ["--resources.worker_cpus=0.25"])
    resources = trial_resources(experiment)
    assert resources({"num_workers": 0}) == {"cpu": 1.0, "gpu": 0}
    assert resources({"num_workers": 2}) == {"cpu": 1.5, "gpu": 0}
    # unmeasured (no probe): a worker may use a whole core
    assert trial_resources(load_experiment(SMOKE))({"num_workers": 1})["cpu"] == 2.0
    # the speed probe fixes num_workers in train: every trial then has one shape
    fixed = apply(experiment, {"chosen": {"num_workers": 1, "pin_memory": True},
                               "worker_cpus": 0.15})
    assert trial_resources(fixed)({"lr": 1e-3})["cpu"] == pytest.approx(1.15)


def test_worker_share_is_measured_use_rounded_up():
    assert worker_cpus(0.0, 0) == 0.0
    assert worker_cpus(0.12, 1) == 0.15
    assert worker_cpus(0.001, 2) == 0.05  # never nothing: a worker exists
    assert worker_cpus(5.0, 2) == 1.0


def row(workers: int, speed: float, share: float) -> dict:
    return {"num_workers": workers, "pin_memory": True, "samples_per_s": speed,
            "worker_cpus": share}


def test_choose_keeps_the_concurrency_then_the_fastest():
    # 2 CPUs, 2 trials of 1 CPU: any worker on top would leave one trial running alone
    rows = [row(0, 50.0, 0.0), row(1, 80.0, 0.2)]
    assert choose(rows, cpus=1, concurrency=2, total_cpus=2)["num_workers"] == 0
    assert [r["fits"] for r in rows] == [True, False]
    # 4 CPUs: 2 x 1.2 fits, and the worker is clearly faster
    assert choose(rows, cpus=1, concurrency=2, total_cpus=4)["num_workers"] == 1
    # within the noise margin the cheaper reservation wins
    assert choose([row(0, 79.0, 0.0), row(1, 80.0, 0.2)], 1, 2, 4)["num_workers"] == 0


def test_speed_knobs_leave_the_space_and_tpe_never_sees_them():
    experiment = load_experiment(EXPERIMENTS / "quickstart.yaml")
    assert candidates(experiment, cuda=False) == [{"num_workers": 0, "pin_memory": True},
                                                  {"num_workers": 1, "pin_memory": True}]
    fixed = apply(experiment, {"chosen": {"num_workers": 1, "pin_memory": True},
                               "worker_cpus": 0.1})
    assert "num_workers" not in fixed.distributions() and "lr" in fixed.distributions()
    assert fixed.train.num_workers == 1 and fixed.resources.worker_cpus == 0.1
    assert "num_workers" in experiment.space  # the original is left alone


def test_probe_measures_every_candidate_and_fixes_one(tmp_path):
    experiment = load_experiment(SMOKE, ["--space.num_workers={choice: [0, 1]}",
                                         "--train.synthetic_images=24"])
    data = experiment.train.load_data()
    record = run_probe(experiment, data, total_cpus=2, steps=4)
    assert [r["num_workers"] for r in record["rows"]] == [0, 1]
    assert all(r["samples_per_s"] > 0 for r in record["rows"])
    assert record["rows"][0]["worker_cpu_per_s"] == 0  # no worker, no worker CPU
    assert record["rows"][1]["worker_cpu_per_s"] > 0  # the forked worker's CPU is counted
    assert record["chosen"]["num_workers"] in (0, 1) and record["batch_size"] == 4
    # one candidate: nothing measured
    single = run_probe(load_experiment(SMOKE), data, total_cpus=2, steps=4)
    assert single["rows"] == [] and single["chosen"]["num_workers"] == 0


def test_timeline_finds_gaps_start_up_and_effective_concurrency():
    statuses = {  # 2 slots; c waits 3 s after a ends, d takes b's slot 1 s after b ends
        "a": {"placed_at": 100.0, "startup_s": 2.0, "compute_s": 8.0, "ended_at": 110.0},
        "b": {"placed_at": 100.5, "startup_s": 1.0, "compute_s": 9.0, "ended_at": 111.0},
        "c": {"placed_at": 113.0, "startup_s": 0.5, "compute_s": 6.0, "ended_at": 120.0},
        "d": {"placed_at": 112.0, "startup_s": 0.5, "compute_s": 7.0, "ended_at": 120.0},
        "e": {"status": "running"},  # not placed yet: left out
    }
    t = trial_timeline(statuses, concurrency=2)
    gaps = {r["trial_id"]: r["gap_s"] for r in t["rows"]}
    assert gaps == pytest.approx({"a": 0.0, "b": 0.5, "d": 2.0, "c": 2.0})
    assert t["wall_s"] == 20.0 and t["compute_s"] == 30.0
    assert t["effective_concurrency"] == pytest.approx(1.5)
    assert t["overhead_vs_ideal"] == pytest.approx(20.0 / (30.0 / 2))
    assert t["median_startup_s"] == pytest.approx(0.75)
    assert trial_timeline({}, 2) == {}
