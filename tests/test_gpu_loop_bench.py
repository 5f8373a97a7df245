"""tools/gpu/loop.py (the loop-vs-step diagnosis for the GPU machine): its whole code path on
the CPU (tiny), with ray, optuna, wandb and pandas made unimportable, as on that machine."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.gpu import loop as gpu_loop

REPO = Path(__file__).resolve().parents[1]
PARTS = ("iter_s", "first_batch_s", "wait_s", "copy_s", "step_s")
EPSILON = 1e-6  # clock rounding between sums of laps and the window around them


@pytest.fixture
def tiny_env(tmp_path):
    """A PYTHONPATH on which importing any of FORBIDDEN fails; the data cache in tmp_path."""
    blocker = tmp_path / "blocked"
    for name in gpu_loop.FORBIDDEN:
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported on the gpu_loop path')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)]),
            "CRACK_SWEEP_CACHE": str(tmp_path / "cache")}


def check_instrumented(rows: list[dict], train_samples: int, batch: int) -> None:
    for row in rows:
        assert row["steps"] == math.ceil(train_samples / batch)
        assert row["samples"] == train_samples and row["samples_per_s"] > 0
        assert all(row[part] >= 0 for part in PARTS)
        # The parts lie inside the loop's timed window, which lies inside its epoch.
        assert sum(row[part] for part in PARTS) <= row["train_s"] + EPSILON
        assert row["train_s"] <= row["epoch_seconds"] + EPSILON
        assert row["val_s"] + row["checkpoint_s"] <= row["outside_train_s"] + EPSILON
        assert row["val_s"] > 0 and row["checkpoint_s"] > 0
        assert row["loop_samples_per_s"] == pytest.approx(row["samples_per_s"])


def test_gpu_loop_tiny_runs_on_cpu_without_sweep_packages(tmp_path, tiny_env):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "tools.gpu.loop", "--tiny", "--device", "cpu", "--out", str(out)],
        env=tiny_env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "gpu_loop.json").read_text())
    assert report["skipped"] == [] and report["forbidden_loaded"] == []
    assert list(report["variants"]) == [label for label, _, _ in gpu_loop.PLAN]
    sizes = report["sizes"]
    train_samples = sizes["images"] - round(sizes["images"] * 0.1)  # val_percent 10
    for label, figures in report["variants"].items():
        assert "error" not in figures, (label, figures.get("error"))
        rows = figures["epochs"]
        assert [r["epoch"] for r in rows] == list(range(1, sizes["epochs"] + 1))
        assert all(r["samples_per_s"] > 0 for r in rows) and figures["steady_samples_per_s"] > 0
        if figures["kind"] == "loop":
            assert all(r["train_s"] <= r["epoch_seconds"] + EPSILON for r in rows)
        if figures["kind"] == "instrumented":
            check_instrumented(rows, train_samples, sizes["batch"])
    table = (out / "gpu_loop.md").read_text()
    assert table in done.stdout and "| instrumented nw4 | 2 |" in table
    blocked = subprocess.run([sys.executable, "-c", "import wandb"], env=tiny_env,
                             capture_output=True)
    assert blocked.returncode != 0  # the blocker was really on the path


def test_gpu_loop_skips_what_the_budget_cannot_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRACK_SWEEP_CACHE", str(tmp_path / "cache"))
    assert gpu_loop.main(["--tiny", "--device", "cpu", "--out", str(tmp_path),
                          "--budget-s", "0"]) == 0
    report = json.loads((tmp_path / "gpu_loop.json").read_text())
    assert report["variants"] == {}
    assert [s.split(":")[0] for s in report["skipped"]] == [label for label, _, _ in gpu_loop.PLAN]
    assert "Skipped: loop nw8" in capsys.readouterr().out


def test_gpu_loop_without_cuda_says_so(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_loop.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_mfu_is_given_over_the_training_part_and_over_the_whole_epoch():
    """Issue 22: validation and the checkpoint count in a sweep's epoch, so the result holds MFU
    over the whole epoch (epoch_seconds) beside the training part's."""
    rows = [{"samples_per_s": 50.0, "train_samples": 100, "epoch_seconds": 4.0},
            {"samples_per_s": 100.0, "train_samples": 100, "epoch_seconds": 2.0}]
    figures = {"epochs": rows}
    gpu_loop.summarise(figures, "loop", flops=10.0, peak=1000.0)
    assert rows[1]["mfu"] == pytest.approx(1.0)  # 100 samples/s x 10 FLOP / 1000
    assert rows[1]["mfu_whole_epoch"] == pytest.approx(0.5)  # 100 samples in 2 s of the epoch
    assert figures["steady_mfu_whole_epoch"] == pytest.approx(0.5)
    loader = {"epochs": [{"samples_per_s": 80.0, "seconds": 1.0}]}
    gpu_loop.summarise(loader, "loader", flops=10.0, peak=1000.0)
    assert loader["epochs"][0]["mfu_whole_epoch"] is None  # no epoch to speak of
