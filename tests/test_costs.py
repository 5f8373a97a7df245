"""The cost metrics (training/costs.py): in every epoch's row, exact where they are counted,
sane where they are timed, and invisible to what the run learns."""
import math
import time

import pytest
import torch
from torch import nn

from data_pipeline import load_data
from models import create_model
from tests.helpers import TIMING_KEYS, results_only, tiny_config
from training import costs
from training.cost_keys import COST_KEYS, LOAD_DEPENDENT, LOAD_INDEPENDENT
from training.loop import train
from training.replicates import combine

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A tiny run's metrics (~1 s). Two runs of one seed learning the same with the costs
    measured: tests/test_training.py test_same_seed_gives_identical_metrics."""
    data = load_data(synthetic_images=20, synthetic_size=32)
    return train(tiny_config(tmp_path_factory.mktemp("costs"), device="cpu"), data).history


def meter_for(model: nn.Module, side: int = 32, channels: int = 3) -> costs.CostMeter:
    return costs.CostMeter(model, channels, (side, side), CPU, None, torch.contiguous_format)


def test_every_epoch_carries_the_costs(history):
    assert len(history) == 2 and all(set(COST_KEYS) <= set(row) for row in history)
    model = create_model("unet", n_channels=3, n_classes=2, width=4)
    assert {row["params"] for row in history} == {sum(p.numel() for p in model.parameters())}
    assert {row["flops"] for row in history} == {6_103_040}  # UNet width 4 at 32 px
    for row in history:
        assert isinstance(row["params"], int) and isinstance(row["flops"], int)
        assert row["latency_ms"] > 0 and row["latency_eval_ms"] > 0
        assert math.isfinite(row["latency_ms_spread"]) and row["latency_ms_spread"] >= 0
        assert row["peak_mem_mb"] >= 0 and row["cpu_load"] >= 0


def test_exact_comparisons_keep_counted_costs_and_drop_timed_ones(history):
    compared = results_only(history)
    assert set(LOAD_INDEPENDENT) <= set(compared[0])
    assert not set(LOAD_DEPENDENT) & set(compared[0]) and set(LOAD_DEPENDENT) <= TIMING_KEYS


def test_params_counts_trainable_parameters_exactly():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1))
    model[0].weight.requires_grad_(False)  # frozen: not a trainable parameter
    assert costs.count_params(model) == 8 + 8 + 8 + 8 * 2 + 2  # bias, BN weight+bias, 1x1


def test_flops_of_known_layers_are_exact():
    conv = nn.Conv2d(3, 8, 3, padding=1)  # 8 outputs x 3 inputs x 9 taps per pixel
    assert costs.count_flops(conv, torch.zeros(1, 3, 16, 16)) == 2 * 8 * 3 * 9 * 16 * 16
    up = nn.ConvTranspose2d(8, 4, 2, stride=2)  # every input pixel: 8 x 4 x 4 taps
    assert costs.count_flops(up, torch.zeros(1, 8, 8, 8)) == 2 * 8 * 8 * 8 * 4 * 4
    assert costs.count_flops(nn.Linear(10, 5), torch.zeros(1, 10)) == 2 * 10 * 5


@pytest.mark.filterwarnings("ignore:.*deterministic implementation")  # SegNet's unpooling
@pytest.mark.parametrize("name", ["unet", "segnet"])
def test_flops_scale_with_pixels_exactly_and_with_width_squared(name):
    def flops(width, side):
        model = create_model(name, n_channels=3, n_classes=2, width=width).eval()
        with torch.no_grad():
            return costs.count_flops(model, torch.zeros(1, 3, side, side))
    assert flops(4, 64) == 4 * flops(4, 32)  # every layer's work is per pixel
    # Inner convolutions scale with c_in x c_out (4x); the first and last, with one side fixed
    # (3 image channels, 2 classes), only 2x: a little under 4 overall.
    assert 3.5 < flops(8, 32) / flops(4, 32) < 4


def test_measurement_leaves_modes_weights_and_random_numbers_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Dropout2d(0.5), nn.Conv2d(4, 2, 1))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model stays frozen
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meter = meter_for(model, side=16)
    torch.manual_seed(7)
    for _ in range(2):  # the first counts FLOPs and warms up; the second is a later epoch's
        meter.measure(costs.ForwardTimer(CPU), budget_s=0.0)
    drawn = torch.rand(8)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(8))  # the next batch's random numbers are untouched
    assert [m.training for m in model.modules()] == modes
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included


def test_timed_repeats_follow_the_budget():
    meter = meter_for(nn.Conv2d(3, 2, 3), side=8)
    assert len(meter.time_batch_one(0.0)) == costs.MIN_TIMED
    assert len(meter.time_batch_one(60.0)) == costs.MAX_TIMED  # never more, however long
    figures = meter.measure(costs.ForwardTimer(CPU), budget_s=0.0)
    assert figures["latency_ms"] > 0 and math.isfinite(figures["latency_ms_spread"])
    assert math.isnan(figures["latency_eval_ms"])  # no validation batch was timed


def test_spread_is_the_middle_80_percent_over_the_median():
    assert costs.spread([2.0, 2.0, 2.0]) == 0 and costs.spread([5.0]) == 0
    assert costs.spread([float(t) for t in range(1, 12)]) == pytest.approx((10 - 2) / 6)


def test_eval_latency_uses_full_batches_only():
    timer = costs.ForwardTimer(CPU)
    for images, seconds in ((4, 0.02), (4, 0.02), (1, 0.2)):  # the last batch is smaller
        with timer.batch(images):
            time.sleep(seconds)
    assert 4.5 <= timer.per_image_ms() < 50  # ~5 ms per image; the partial batch's 200 left out


def test_cpu_peak_memory_is_this_epochs_growth():
    if costs.status_kb("VmHWM") is None:
        pytest.skip("needs Linux's /proc/self/status")
    memory = costs.PeakMemory(CPU)
    memory.reset()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page touched
    del block
    if math.isnan(memory.peak_mb()):
        pytest.skip("this kernel does not let a process reset its peak (clear_refs)")
    assert memory.peak_mb() >= 60
    memory.reset()  # the next epoch: the freed block no longer counts
    assert memory.peak_mb() < 32


def test_seeds_combine_counted_costs_as_one_and_timed_ones_as_mean_or_max():
    rows = [{"epoch": 1, "epoch_seconds": 1.0, "val_dice": 0.5, "val_iou": 0.4, "params": 10,
             "flops": 20, "latency_ms": latency, "peak_mem_mb": memory}
            for latency, memory in ((1.0, 30.0), (3.0, 50.0))]
    combined = combine(rows, [0, 1])
    assert combined["params"] == 10 and isinstance(combined["params"], int)
    assert combined["flops"] == 20
    assert combined["latency_ms"] == 2.0 and combined["peak_mem_mb"] == 50.0


@pytest.mark.gpu
def test_cuda_costs_come_from_the_device(gpu, tmp_path):
    """Peak memory from max_memory_allocated; latency timed with synchronisation, also under
    autocast; the validation's forwards timed with CUDA events."""
    memory = costs.PeakMemory(gpu)
    memory.reset()
    block = torch.ones(64 * 2**20 // 4, device=gpu)  # 64 MiB
    assert memory.peak_mb() >= 64
    del block
    model = create_model("unet", n_channels=3, n_classes=2, width=8).to(gpu)
    meter = costs.CostMeter(model, 3, (64, 64), gpu, torch.bfloat16, torch.channels_last)
    timer = costs.ForwardTimer(gpu)
    with torch.inference_mode():
        for _ in range(3):
            with timer.batch(4):
                model(torch.zeros(4, 3, 64, 64, device=gpu))
    figures = meter.measure(timer, budget_s=0.0)
    assert figures["latency_ms"] > 0 and figures["latency_eval_ms"] > 0
    assert figures["peak_mem_mb"] > 0 and figures["flops"] == 4 * 23_937_024  # 64 px: 4x 32 px
    data = load_data(synthetic_images=20, synthetic_size=32)
    history = train(tiny_config(tmp_path, device="cuda"), data).history
    assert all(set(COST_KEYS) <= set(row) for row in history)
    assert all(row["peak_mem_mb"] == row["gpu_peak_mem_mb"] > 0 for row in history)
