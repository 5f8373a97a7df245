"""Fractional GPU trials on a machine without one: Ray is told of one fake GPU, and four trials
at resources.gpus 0.25 must run at once on it, each told its GPU id. The test session's shared
Ray has no GPU and one process cannot hold two Ray sessions, so a child process runs its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, os, sys, time
import ray
from ray import tune
from sweep.experiment import Experiment
from sweep.ray_session import check_resources
from sweep.search import trial_resources
from sweep.trainable import trial_gpu_ids

experiment = Experiment.from_dict({
    "name": "fake_gpu", "train": {"width": 4, "device": "cpu"},
    "space": {"lr": {"choice": [1e-3, 2e-3, 3e-3, 4e-3]}}, "resources": {"cpus": 1, "gpus": 0.25},
    "search": {"trials": 4, "concurrency": 4}}, "test")

TEMP, STORAGE, BARRIER = sys.argv[1:4]  # read here: a trial's worker has its own argv


def probe(config):
    # A barrier: each trial waits until all four have started. It only opens if Ray placed
    # the four at once (a slow machine only makes it take longer).
    barrier = BARRIER
    open(os.path.join(barrier, str(config["seed"])), "w").close()
    deadline = time.time() + 240
    while len(os.listdir(barrier)) < 4 and time.time() < deadline:
        time.sleep(0.2)
    tune.report({"together": len(os.listdir(barrier)) == 4, "ours": trial_gpu_ids(),
                 "ray_ids": [str(i) for i in ray.get_gpu_ids()],
                 "visible": os.environ.get("CUDA_VISIBLE_DEVICES")})

ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False,
         log_to_driver=False, _temp_dir=TEMP)
check_resources(experiment, ray.cluster_resources())  # 0.25 of 1 GPU: accepted
trainable = tune.with_resources(probe, trial_resources(experiment))
results = tune.Tuner(trainable, param_space={"seed": tune.grid_search([0, 1, 2, 3])},
                     tune_config=tune.TuneConfig(max_concurrent_trials=4),
                     run_config=tune.RunConfig(storage_path=STORAGE, verbose=0)).fit()
rows = [r.metrics for r in results]
keys = ("together", "ours", "ray_ids", "visible")
print("RESULT " + json.dumps([{k: r[k] for k in keys} for r in rows]))
ray.shutdown()
'''


def test_four_quarter_gpu_trials_run_at_once_on_one_fake_gpu(hermetic_root, tmp_path):
    pytest.importorskip("ray")
    temp = os.path.join(hermetic_root, "rayfg")  # short: Ray's socket paths live under it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    done = subprocess.run([sys.executable, "-c", CHILD, temp, str(tmp_path / "tune"),
                           str(barrier)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=420)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    trials = json.loads(lines[0].removeprefix("RESULT "))
    assert len(trials) == 4
    # Each trial was given GPU 0, and Ray told torch so through CUDA_VISIBLE_DEVICES.
    assert all(t["ours"] == "0" and t["ray_ids"] == ["0"] and t["visible"] == "0"
               for t in trials)
    assert all(t["together"] for t in trials)  # all four ran at once
