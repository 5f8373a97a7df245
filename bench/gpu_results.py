"""The GPU result files the benchmark doc reads (bench/docs.py, bench/docs_figures.py)."""
from __future__ import annotations

from pathlib import Path

# Result files the GPU machines wrote (no `python -m bench` entry: they run where ray is not
# installed). They hold no date or command: "added" is the commit that wrote the file (git log),
# and the command is the one that commit's README recorded.
GPU_SOURCES = [
    {"path": "bench/gpu_h100.json", "title": "gpu: precision and sharing",
     "command": "python -m bench.gpu_bench", "key": "gpu_bench", "added": "ee5961f, 2026-11-25"},
    {"path": "tools/gpu/results/gpu_h200.json", "title": "GPU sweep check",
     "command": 'PHASES="--phases mfu_eager,sweep,share,mfu_compile,quickstart,mfu_loop" '
                "bash tools/gpu/sweep.sh $OUT 565", "key": "gpu_sweep",
     "added": "e4ba9aa, 2026-11-26"},
    {"path": "tools/gpu/results/gpu_h200_loop.json", "title": "GPU training loop vs its step",
     "command": "CUBLAS_WORKSPACE_CONFIG=:4096:8 python3 -m tools.gpu.loop --out $OUT "
                "--budget-s 330", "key": "gpu_loop",
     "skip": ("variants",), "added": "35646e6, 2026-11-26"},
    {"path": "tools/gpu/results/gpu_h200_loop_before_prefetch.json",
     "title": "GPU training loop vs its step, before the loop's prefetch",
     "command": "CUBLAS_WORKSPACE_CONFIG=:4096:8 python3 -m tools.gpu.loop --out $OUT "
                "--budget-s 420",
     "key": "gpu_loop_before", "skip": ("variants",), "added": "f711c6c, 2026-11-26"},
]
GPU_TESTS_LOG = Path("tools/gpu/results/gpu_h200_tests.log")  # `pytest -m gpu` on the H200
