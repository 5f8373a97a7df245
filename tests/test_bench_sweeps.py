"""The sweep benchmarks (overhead, memory, wandb; search-live's timelines): their measuring
parts on made-up inputs, and their tiny modes end to end through the real sweep runner and a
shared Ray session."""
import json
import subprocess
import sys
import time

import pytest

from bench.memory_probe import PeakSampler, check_supported, descendants, tree_pss_mb
from bench.registry import Context
from bench.sweeps import epoch_timeline, slope, to_target


def write_trial(tune_dir, trial_id, rows):
    folder = tune_dir / trial_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_timeline_orders_epochs_by_when_they_ended(tmp_path):
    # Trial a: started at t=100.3, epochs of 2.5 s. Trial b: started at t=101.1, epochs of 1 s.
    write_trial(tmp_path, "a", [{"epoch": e, "val_dice": 0.1 * e, "time_total_s": 2.5 * e,
                                 "timestamp": int(100.3 + 2.5 * e)} for e in (1, 2, 3)])
    write_trial(tmp_path, "b", [{"epoch": e, "val_dice": 0.5 if e == 2 else 0.2,
                                 "time_total_s": 1.0 * e, "timestamp": int(101.1 + e)}
                                for e in (1, 2)])
    rows = epoch_timeline(tmp_path)
    assert [(r["trial"], r["epoch"]) for r in rows] == [("b", 1), ("a", 1), ("b", 2), ("a", 2),
                                                        ("a", 3)]
    assert all(abs(r["start"] - {"a": 100.3, "b": 101.1}[r["trial"]]) < 1 for r in rows)
    reached = to_target(rows, target=0.45)
    assert reached["trial_epochs"] == 3 and reached["total"] == 5
    assert reached["wall_s"] == pytest.approx(3.1, abs=1.0)  # b's epoch 2 ended near t=103.1
    assert to_target(rows, target=0.9)["trial_epochs"] is None


def test_slope_of_peaks_per_trial():
    assert slope({1: 100.0, 2: 150.0, 4: 250.0}) == pytest.approx(50.0)


# A fresh interpreter that, told to, maps 64 MB, forks two children that read all of it, and
# holds it. Measured there, not in the test's own process tree: a pytest-xdist worker's tree
# also holds its Ray session, whose workers' memory moves by tens of MB meanwhile.
SHARER = """
import os, sys, time
import numpy as np
print("ready", flush=True)
sys.stdin.readline()
shared = np.ones(64 * 2**20, dtype=np.uint8)
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        shared.sum()  # read every page: mapped in this process too
        print("child", flush=True)
        time.sleep(30)
        os._exit(0)
    children.append(pid)
sys.stdin.readline()
for pid in children:
    os.kill(pid, 9)
"""


def test_pss_counts_memory_shared_by_forked_processes_once():
    check_supported()
    sharer = subprocess.Popen([sys.executable, "-c", SHARER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert sharer.stdout.readline() == "ready\n"
        before = tree_pss_mb(sharer.pid)
        sharer.stdin.write("go\n")
        sharer.stdin.flush()
        assert [sharer.stdout.readline() for _ in range(2)] == ["child\n"] * 2
        assert len(descendants(sharer.pid)) == 3
        with PeakSampler(sharer.pid, interval_s=0.1) as sampler:
            time.sleep(0.5)
        grown = sampler.peak_mb - before
        assert 60 < grown < 64 * 2 + 40  # counted once (plus the children's own), not 3 times
        # The anonymous peak is attributed to process kinds, and the parts add up to it.
        assert sum(sampler.peak_anon_by_kind.values()) == pytest.approx(sampler.peak_anon_mb)
        assert sampler.samples >= 2 and 0.09 < sampler.mean_period_s() < 0.5
    finally:
        sharer.stdin.close()
        sharer.wait(timeout=30)


# ---- tiny modes through the real runner ------------------------------------------------------
# Each tiny sweep costs 5-10 s on 2 cores; all four (`overhead`: a sweep and plain processes; the
# others: 2 sweeps each, their measuring logic tested above) run in the default `make test`.
@pytest.fixture
def tiny(tmp_path, ray_session):
    pytest.importorskip("sweep.runner")
    return Context(tiny=True, work_dir=tmp_path)


def test_overhead_tiny_runs_the_sweep_and_the_plain_processes(tiny):
    from bench.sweeps import OVERHEAD, run_overhead

    outcome = run_overhead(tiny)
    sweep = outcome.figures["runs"]["sweep"][0]
    assert sweep["counts"]["complete"] == OVERHEAD["tiny"]["trials"]
    assert outcome.figures["plain_s"]["median"] > 0 and outcome.ratio > 0
    plain_runs = list((tiny.work_dir / "plain0").glob("trial*/metrics.jsonl"))
    assert len(plain_runs) == OVERHEAD["tiny"]["trials"]


def test_memory_tiny_samples_peaks(tiny):
    from bench.sweeps import run_memory

    outcome = run_memory(tiny)
    peaks = outcome.figures["peak_pss_mb"]
    assert set(peaks) == {1, 2} and all(p > 100 for p in peaks.values())
    assert outcome.figures["plain_process_mb"] > 50
    # Two trials at once: the peak's composition names Ray's trial workers.
    kinds = outcome.figures["big_data_peaks"][2]["anon_by_process_kind"]
    assert any(kind.startswith("ray::") for kind in kinds), kinds


def test_memory_sets_score_the_same_number_of_validation_images():
    """The small and big folders validate on equally many images: a trial's memory peaks while
    it scores whole images, so unequal validation sets would pass off as data-set growth."""
    from bench.sweeps import MEMORY, memory_values
    from data_pipeline.data import split_indices

    s = MEMORY["full"]
    for images in (s["small_images"], s["big_images"]):
        data = {"folder": "f", "cache_dir": "c", "build": {"images": images}}
        percent = memory_values("m", s, data, 1)["train"]["val_percent"]
        assert len(split_indices(images, percent, 0)[1]) == s["val_images"]


def test_wandb_tiny_mirrors_the_sweep(tiny):
    from bench.sweeps import run_wandb

    outcome = run_wandb(tiny)
    assert all(r["wandb_runs"] >= 1 for r in outcome.figures["runs"]["on"])
    assert all(r["wandb_runs"] == 0 for r in outcome.figures["runs"]["off"])


def test_slots_tiny_measures_the_sweep_and_raw_tune(tiny):
    from bench.slots import run

    outcome = run(tiny)
    sweep, raw = outcome.figures["sweep"], outcome.figures["raw_tune"]
    assert sweep["concurrency"] == 2 and sweep["compute_s"]["median"] > 0
    assert sweep["median_startup_s"]["n"] == 1 and sweep["overhead_vs_ideal"]["median"] > 0
    assert raw["trials"] == sweep["counts"]["complete"] + sweep["counts"]["pruned"]
    assert raw["overhead_vs_ideal"]["median"] > 0 and outcome.ratio > 0
    # Like for like: raw Tune trains every trial with the sweep's seeds (quickstart: 2; raw's
    # count is read from the per-seed metrics its trials reported).
    assert raw["seeds_per_trial"] == sweep["seeds_per_trial"] == 2
    # The whole command's window holds the trials' window, so its concurrency is lower.
    for side in (sweep, raw):
        whole = side["whole_sweep_effective_concurrency"]["median"]
        assert 0 < whole <= side["effective_concurrency"]["median"]
        assert side["command_s"]["median"] >= side["wall_s"]["median"]
    assert outcome.figures["whole_sweep_effective_concurrency"] == \
        sweep["whole_sweep_effective_concurrency"]


def test_modes_tiny_runs_both_search_modes(tiny):
    from bench.sweeps import MODES_TINY, run_modes

    outcome = run_modes(tiny)
    for mode in ("reproducible", "async"):
        (run,) = outcome.figures["runs"][mode]
        assert sum(run["counts"].values()) == MODES_TINY["search"]["trials"]
    assert outcome.ratio > 0
