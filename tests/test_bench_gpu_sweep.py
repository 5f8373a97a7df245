"""The GPU session's script (tools/gpu/sweep.py and its helpers) on CPU: what can be proven
without the card. The figures themselves come from the lent GPU machine (issue 10)."""
from __future__ import annotations

import json
import zipfile

import pytest

from tools.gpu import carry as gpu_carry
from tools.gpu import env as gpu_env
from tools.gpu import sweep as gpu_sweep
from tools.gpu.sweep_md import markdown


def test_search_seed_puts_the_oom_batch_in_one_later_trial():
    make = lambda seed: gpu_sweep.oom_experiment(False, "cuda", seed)[0]  # noqa: E731
    seed, draws = gpu_sweep.choose_search_seed(make, gpu_sweep.OOM_BATCH)
    experiment = make(seed)
    assert len(draws) == experiment.search.trials == 8
    assert draws.count(gpu_sweep.OOM_BATCH) == 1
    assert draws.index(gpu_sweep.OOM_BATCH) >= experiment.search.concurrency == 4
    assert experiment.resources.gpus == 0.25 and experiment.train.width == 64
    # The OOM batch is larger than the training split: the whole split in one batch.
    assert experiment.train.synthetic_images * 0.9 > gpu_sweep.OOM_BATCH


def test_share_experiments_differ_only_in_how_many_share():
    one, four = (gpu_sweep.share_experiment(n, False, "cuda") for n in (1, 4))
    assert (one.search.concurrency, four.search.concurrency) == (1, 4)
    assert one.train == four.train and one.resources.gpus == four.resources.gpus == 0.25
    assert four.scheduler.grace_period == four.scheduler.max_epochs  # nothing is pruned


def test_a_budget_too_small_skips_every_phase_and_says_so(tmp_path):
    result = gpu_sweep.drive(tmp_path, budget_s=20, tiny=False, device="cuda",
                             phases=["mfu_eager", "sweep"])
    assert result["phases"] == {}
    assert set(result["skipped"]) == {"mfu_eager", "sweep"}
    text = (tmp_path / "gpu_sweep.md").read_text()
    assert "skipped sweep:" in text
    assert json.loads((tmp_path / "gpu_sweep.json").read_text())["skipped"]


def test_markdown_shows_mfu_oom_trial_and_sharing():
    result = {"budget_s": 420, "wall_s": 400, "machine": {"gpu": "NVIDIA H100", "cuda": "13"},
              "skipped": {"quickstart": "30 s left, needs 90 s"},
              "phases": {
                  "mfu_eager": {"device": "NVIDIA H100", "width": 64, "px": 256,
                                "flops_per_image": 289e9, "peak_flops": 989e12,
                                "variants": {"eager det b16": {"samples_per_s": 400.0,
                                                               "tflops": 115.6, "mfu": 0.117,
                                                               "peak_mem_mb": 3400.0}},
                                "skipped": [], "exit_code": 0, "seconds": 50.0},
                  "sweep": {"trials": [{"trial": "a1", "params": {"batch_size": 1024},
                                        "status": "infeasible", "optuna": "FAIL",
                                        "reason": "out of memory: CUDA out of memory",
                                        "epochs": 0, "samples_per_s": None, "gpu_ids": None,
                                        "gpu_peak_mem_mb": None}],
                            "per_gpu": [], "counts": {"infeasible": 1}, "oom_batch": 1024},
                  "share": {"counts": {"1": {"aggregate_samples_per_s": 200.0,
                                             "end_to_end_samples_per_s": 150.0,
                                             "per_trial_samples_per_s": [200.0]},
                                       "4": {"aggregate_samples_per_s": 520.0,
                                             "end_to_end_samples_per_s": 400.0,
                                             "per_trial_samples_per_s": [130.0] * 4}},
                            "ratios": {"4 vs 1": 2.6}}}}
    text = markdown(result)
    assert "| eager det b16 | 400.0 | 115.6 | 11.7% | 3400 |" in text
    assert "289.0 GFLOP per image" in text
    assert "| a1 | 1024 | infeasible | FAIL |" in text
    assert "4 vs 1: 2.60x (goal >= 2.5x)" in text
    assert "skipped quickstart" in text


def test_mfu_counts_flops_and_times_our_step_on_cpu():
    torch = pytest.importorskip("torch")
    from bench import gpu_mfu

    device, threads = torch.device("cpu"), torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine, 2 spinning threads crawl
    try:
        flops = gpu_mfu.flops_per_image(4, 32, device, None)
        figures = gpu_mfu.time_step(4, 32, 2, device, None, compile_=False,
                                    deterministic=True, seconds=0.01)
    finally:
        torch.set_num_threads(threads)
    assert flops > 0
    assert figures["samples_per_s"] > 0 and figures["steps"] >= 5
    assert gpu_mfu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_mfu.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_mfu.peak_flops("NVIDIA H200") == 989e12


def test_carry_recipe_classifies_and_strips(tmp_path):
    assert gpu_carry.wheel_name(tmp_path / "typing_extensions-4.15.0-py3-none-any.whl") \
        == "typing-extensions"
    assert {"ray", "optuna", "wandb", "pydantic", "sqlalchemy"}.isdisjoint(gpu_carry.PRESENT)
    site = tmp_path / "site"
    for path in ("ray/jars/ray_dist.jar", "ray/dashboard/client/build/main.js.map",
                 "ray/dashboard/client/build/main.js", "bin/ray", "ray/__init__.py"):
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text("x" * 10)
    assert gpu_carry.strip(site) == 30
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()) == [
        "ray/__init__.py", "ray/dashboard/client/build/main.js"]


def fake_dist(folder, name: str, version: str, requires: list[str]) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = [f"Name: {name}", f"Version: {version}", *[f"Requires-Dist: {r}" for r in requires]]
    (info / "METADATA").write_text("Metadata-Version: 2.1\n" + "\n".join(lines) + "\n")


def test_env_check_installs_a_fallback_only_when_a_requirement_is_unmet(tmp_path, monkeypatch):
    site, fallback = tmp_path / "site", tmp_path / "fallback"
    fake_dist(site, "carriedpkg", "1.0", ["pytest>=1", "zzfakedep>=2.0",
                                           "neverneeded>=1; extra == 'other'"])
    fallback.mkdir()
    with zipfile.ZipFile(fallback / "zzfakedep-2.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr("zzfakedep/__init__.py", "")
        wheel.writestr("zzfakedep-2.1.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: zzfakedep\nVersion: 2.1\n")
    monkeypatch.syspath_prepend(str(site))
    missing = gpu_env.unmet(site)
    assert [m["package"] for m in missing] == ["zzfakedep"]  # pytest is met, the extra skipped
    assert gpu_env.install_fallbacks(missing, fallback, site) == [
        "zzfakedep-2.1-py3-none-any.whl"]
    assert gpu_env.unmet(site) == []
