"""The benchmark framework and the `loop` benchmark's tiny mode (proves the code, not the speed)."""
import json

import numpy as np
import pytest
import torch

from bench.__main__ import main
from bench.child import BenchError, run_in_child
from bench.data_folder import folder_ids, split_ids, write_crack_folder
from bench.machine import machine_info, machine_line
from bench.measure import interleave, median, ratio, steady_throughput
from bench.reference_loop import (
    PerItemDecodeDataset,
    pooled_dice_loss,
    reference_loss,
    scan_mask_values,
)
from bench.results import markdown_table, save_entry
from data_pipeline import load_data


def test_interleave_alternates_which_side_goes_first():
    calls = []
    runs = interleave({"a": lambda i: calls.append(("a", i)) or i * 10,
                       "b": lambda i: calls.append(("b", i)) or -i}, repeats=3)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert runs == {"a": [0, 10, 20], "b": [0, -1, -2]}
    with pytest.raises(ValueError):
        interleave({"a": lambda i: i}, repeats=0)


def test_steady_throughput_leaves_out_the_first_epoch():
    # epoch 1 took 10 s (warm-up), epochs 2 and 3 took 2 s each: 50 samples per epoch.
    assert steady_throughput(50, [10.0, 12.0, 14.0], start=0.0) == pytest.approx(25.0)
    assert steady_throughput(50, [5.0], start=0.0) == pytest.approx(10.0)
    assert median([3.0, 1.0, 2.0]) == 2.0 and ratio(3.0, 2.0) == 1.5
    with pytest.raises(ValueError):
        ratio(1.0, 0.0)


def test_machine_info_names_cpu_cores_and_versions():
    info = machine_info()
    assert info["cores"] >= 1 and info["cpu"] and info["torch"] == torch.__version__
    line = machine_line(info)
    assert f"torch {torch.__version__}" in line and "cores" in line


def entry(name, headline, met, **extra):
    return {"name": name, "what": "w", "goal": ">= 1.5x", "mode": "full", "headline": headline,
            "met": met, "ratio": 1.0, "figures": {}, "notes": [f"{name} note"],
            "machine": {"cpu": "Test CPU", "cores": 2, "torch": "2.x", "python": "3.11"},
            "date": "2026-11-25T00:00:00+00:00", **extra}


def test_results_keep_other_entries_and_render_one_table(tmp_path):
    path = tmp_path / "results.json"
    save_entry(path, entry("loop", "1.8x", True))
    save_entry(path, entry("overhead", "failed", None, error="BenchError: boom"))
    results = save_entry(path, entry("loop", "1.9x", True))  # replaces, keeps overhead
    assert set(json.loads(path.read_text())["benchmarks"]) == {"loop", "overhead"}
    table = markdown_table(results)
    assert "| loop | 1.9x | >= 1.5x | yes | full | 2026-11-25 |" in table
    assert "Machine: Test CPU, 2 cores" in table and "overhead: FAILED: BenchError: boom" in table


def test_unknown_benchmark_is_one_line_exit_2(capsys):
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown benchmark(s) nosuch") and len(err.splitlines()) == 1


def test_bench_list_names_every_benchmark(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("loop", "overhead", "search", "memory", "wandb", "gpu"):
        assert name in out


def test_child_failure_names_the_error(tmp_path):
    with pytest.raises(BenchError, match="median of no values"):
        run_in_child("bench.measure:median", {"values": []}, tmp_path, "bad", timeout=60)
    assert run_in_child("bench.measure:median", {"values": [1, 5, 2]}, tmp_path, "ok",
                        timeout=60) == 2.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_crack_folder(tmp_path_factory.mktemp("cracks"), images=6, size=48, seed=1)


def test_reference_dataset_decodes_the_same_pixels_our_folder_loader_does(folder):
    ours = load_data(str(folder), scale=0.5)
    ids = folder_ids(folder)
    mask_values = scan_mask_values(folder, ids)
    assert mask_values == ours.mask_values == [0, 255]
    item = PerItemDecodeDataset(folder, ids, 0.5, mask_values)[2]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 24, 24)
    ours_image = torch.from_numpy(ours.images[2].transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.allclose(item["image"], ours_image, atol=1e-6)
    assert torch.equal(item["mask"], torch.from_numpy(ours.masks[2].astype(np.int64)))


def test_reference_split_matches_ours(folder):
    train_ids, val_ids = split_ids(folder_ids(folder), 20.0, 0)
    assert len(val_ids) == 1 and not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == folder_ids(folder)


def test_reference_loss_is_zero_dice_for_a_perfect_prediction():
    masks = torch.randint(0, 2, (2, 8, 8))
    target = torch.nn.functional.one_hot(masks, 2).permute(0, 3, 1, 2).float()
    assert float(pooled_dice_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    loss = reference_loss(logits, masks)
    loss.backward()
    assert float(loss.detach()) > 0 and logits.grad.abs().sum() > 0


def test_loop_benchmark_tiny_mode_end_to_end(tmp_path, capsys):
    results = tmp_path / "results.json"
    assert main(["loop", "--tiny", "--results", str(results),
                 "--scratch", str(tmp_path / "scratch")]) == 0
    loop = json.loads(results.read_text())["benchmarks"]["loop"]
    assert loop["mode"] == "tiny" and loop["met"] is None  # tiny figures judge nothing
    figures = loop["figures"]
    assert figures["samples_per_s"]["ours"]["median"] > 0
    assert figures["samples_per_s"]["reference"]["median"] > 0
    assert loop["ratio"] == pytest.approx(figures["samples_per_s"]["ours"]["median"]
                                          / figures["samples_per_s"]["reference"]["median"])
    for side in ("ours", "reference"):
        assert 0.0 <= figures["val_dice"][side] <= 1.0
        assert figures["runs"][side][0]["n_train"] == figures["runs"]["ours"][0]["n_train"]
    assert loop["machine"]["torch"] == torch.__version__
    assert "| loop |" in results.with_suffix(".md").read_text()
    assert "| loop |" in capsys.readouterr().out


def test_cache_benchmark_tiny_mode_end_to_end(tmp_path):
    results = tmp_path / "results.json"
    assert main(["cache", "--tiny", "--results", str(results),
                 "--scratch", str(tmp_path / "scratch")]) == 0
    cache = json.loads(results.read_text())["benchmarks"]["cache"]
    figures = cache["figures"]
    assert cache["mode"] == "tiny" and cache["met"] is None
    assert figures["build"]["images"] == 8 and figures["build"]["cache_mb"] > 0
    speeds = {side: figures["samples_per_s"][side]["median"] for side in figures["samples_per_s"]}
    assert set(speeds) == {"in-memory", "cache warm", "cache cold"} and min(speeds.values()) > 0
    assert cache["ratio"] == pytest.approx(speeds["cache cold"] / speeds["in-memory"])
    assert len(set(figures["val_dice"].values())) == 1  # same pixels, same model: same score


def test_dropping_the_page_cache_reaches_a_memory_mapped_view(tmp_path):
    """The cold side's eviction finds the mmap behind a view of a memory-mapped array."""
    import numpy as np

    from bench.cache_bench import drop_from_page_cache, memory_maps

    np.save(tmp_path / "a.npy", np.arange(4096 * 4, dtype=np.uint8))
    view = np.load(tmp_path / "a.npy", mmap_mode="r")[8:]
    assert len(memory_maps(view)) == 1 and memory_maps(np.zeros(3)) == []
    drop_from_page_cache([tmp_path / "a.npy"], [view])
    assert int(view[0]) == 8  # still readable: the next touch maps the page again
