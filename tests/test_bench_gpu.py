"""The GPU benchmark script: its whole code path on the CPU (tiny), with ray, optuna, wandb and
pandas made unimportable, as on the GPU machine that has torch alone."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_bench

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("ray", "optuna", "wandb", "pandas")


@pytest.fixture
def without_sweep_packages(tmp_path):
    """A PYTHONPATH on which importing any of FORBIDDEN fails (children inherit it)."""
    blocker = tmp_path / "blocked"
    for name in FORBIDDEN:
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported on the gpu_bench path')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}


def test_gpu_bench_tiny_runs_on_cpu_without_ray_or_wandb(tmp_path, without_sweep_packages):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_bench", "--tiny", "--device", "cpu",
         "--work", str(tmp_path / "work")],
        env={**without_sweep_packages, "OUT": str(out)}, cwd=REPO, capture_output=True,
        text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "gpu_bench.json").read_text())
    assert not report["summary"]["errors"], report["summary"]["errors"]
    compared = {c["what"] for c in report["summary"]["comparisons"]}
    assert {"ours bf16+CL vs ours fp32", "ours bf16+CL vs reference autocast",
            "2 trainings sharing the GPU vs 1 (aggregate)"} <= compared
    assert set(report["summary"]["sides"]) == set(gpu_bench.TINY.sides)
    table = (out / "gpu_bench.md").read_text()
    assert table in done.stdout and "| side (UNet width 4, 32 px, batch 2)" in table
    for name in FORBIDDEN:  # the blocker was really on the path
        blocked = subprocess.run([sys.executable, "-c", f"import {name}"],
                                 env=without_sweep_packages, capture_output=True)
        assert blocked.returncode != 0


def test_gpu_bench_without_cuda_says_so(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_bench.main(["--device", "cuda", "--work", str(tmp_path / "work"),
                           "--out", str(tmp_path / "out")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert "no CUDA GPU" in (tmp_path / "out" / "gpu_bench.md").read_text()


@pytest.mark.gpu
def test_gpu_bench_tiny_on_the_gpu(gpu, tmp_path):
    report = gpu_bench.benchmark(tiny=True, device="cuda", work=tmp_path)
    assert not report["summary"]["errors"]
    assert all(s["peak_mem_mb"] > 0 for s in report["summary"]["sides"].values())
