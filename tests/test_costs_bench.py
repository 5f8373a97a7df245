"""The `costs` benchmark (bench/costs_bench.py): its tiny mode end to end (one child process,
both models, 2 epochs each) and the summary's refusals. Tiny figures prove the code, not the
costs."""
import json

import pytest

from bench.__main__ import main
from bench.child import BenchError
from bench.costs_bench import SMOKE, TIMED, model_figures, row_stats
from sweep.experiment import load_experiment


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("costs_bench")
    results = folder / "results.json"
    assert main(["costs", "--tiny", "--results", str(results),
                 "--scratch", str(folder / "scratch")]) == 0
    assert "## costs" in results.with_suffix(".md").read_text()  # the generator renders it
    return json.loads(results.read_text())["benchmarks"]["costs"]


def test_tiny_mode_records_both_models_with_machine_and_load(entry):
    assert entry["mode"] == "tiny" and entry["met"] is None and not entry.get("error")
    assert entry["machine"]["load_avg_1m"] is not None and entry["command"].startswith(
        "python -m bench costs")
    figures = entry["figures"]
    assert set(figures) == {"tiny", "smoke"}
    assert figures["tiny"]["flops"] == 6_103_040  # UNet width 4 at 32 px (tests/test_costs.py)
    smoke = load_experiment(SMOKE).train
    assert figures["smoke"]["setup"]["width"] == smoke.width  # read from the file
    assert figures["smoke"]["setup"]["synthetic_size"] == smoke.synthetic_size


@pytest.mark.parametrize("model", ["tiny", "smoke"])
def test_tiny_mode_figures_are_sane(entry, model):
    figures = entry["figures"][model]
    assert figures["params"] > 0 and figures["flops"] > 0
    assert len(figures["runs"]) == 1 and len(figures["runs"][0]) == 2  # 1 run x 2 epochs
    for key in ("latency_ms", "latency_eval_ms"):
        assert figures["over_rows"][key]["median"] > 0
        assert figures["per_run_medians"][key]["median"] > 0
    assert figures["over_rows"]["latency_ms_spread"]["median"] >= 0
    assert figures["over_rows"]["peak_mem_mb"]["median"] >= 0
    assert figures["over_rows"]["cpu_load"]["median"] > 0  # this process's load counts too
    for epochs in ("first_epoch", "later_epochs"):
        assert 0 < figures["measure_share"][epochs]["median"] < 1
        assert figures["epoch_seconds"][epochs]["median"] > 0
    assert entry["ratio"] == entry["figures"]["smoke"]["measure_share"]["later_epochs"]["median"]


def row(**changes):
    values = {"epoch": 1, "epoch_seconds": 1.0, "measure_s": 0.01, "measure_share": 0.01,
              "params": 10, "flops": 100, "latency_ms": 2.0, "latency_eval_ms": 1.0,
              "latency_ms_spread": 0.1, "peak_mem_mb": 5.0, "cpu_load": 0.5}
    return {**values, **changes}


def test_counted_costs_that_differ_between_rows_are_refused():
    config = {"model": "unet", "width": 4, "synthetic_images": 20, "synthetic_size": 32,
              "batch_size": 4, "eval_batch_size": 4, "val_percent": 20, "threads": 1,
              "epochs": 2}
    figures = model_figures([[row(), row(epoch=2)], [row(), row(epoch=2)]], config)
    assert set(TIMED) <= set(figures["over_rows"]) and figures["params"] == 10
    assert figures["per_run_medians"]["latency_ms"]["n"] == 2  # one median per run
    with pytest.raises(BenchError, match="flops differs"):
        model_figures([[row(), row(epoch=2, flops=101)]], config)


def test_unmeasured_peak_memory_is_left_out_not_averaged_in():
    # (p90 - p10) / median of [4, 6]: (5.8 - 4.2) / 5, the deciles interpolated
    assert row_stats([None, 4.0, 6.0]) == {"median": 5.0, "spread": pytest.approx(0.32),
                                           "rows": 2}
    assert row_stats([None]) == {"median": None, "spread": None, "rows": 0}
