"""The training loop's promises: same seed => same metrics; num_workers changes nothing;
exact resume from checkpoints; Pytorch-UNet weights as a starting point."""
import json
import logging

import pytest
import torch

from data_pipeline import load_data
from tests.helpers import results_only, tiny_config
from training.checkpoints import CheckpointError
from training.cost_keys import COST_KEYS
from training.loop import train


@pytest.fixture(scope="module")
def data():
    return load_data(synthetic_images=20, synthetic_size=32)


def test_same_seed_gives_identical_metrics(tmp_path, data):
    first = train(tiny_config(tmp_path / "a"), data)
    second = train(tiny_config(tmp_path / "b"), data)
    assert results_only(first.history) == results_only(second.history)
    assert len(first.history) == 2 and first.history[0]["epoch"] == 1
    # The cost metrics are measured all the same; the counted ones take part in the comparison.
    assert set(COST_KEYS) <= set(first.history[0])
    assert {"params", "flops"} <= set(results_only(first.history)[0])


def test_another_seed_gives_different_metrics(tmp_path, data):
    first = train(tiny_config(tmp_path / "a", seed=0), data)
    other = train(tiny_config(tmp_path / "b", seed=1), data)
    assert [r["train_loss"] for r in first.history] != [r["train_loss"] for r in other.history]


@pytest.mark.parametrize("model", ["unet", "segnet"])
def test_num_workers_do_not_change_results(tmp_path, data, model):
    serial = train(tiny_config(tmp_path / "a", model=model, num_workers=0), data)
    parallel = train(tiny_config(tmp_path / "b", model=model, num_workers=2), data)
    assert results_only(serial.history) == results_only(parallel.history)


def test_resume_continues_exactly(tmp_path, data):
    straight = train(tiny_config(tmp_path / "a", epochs=4), data)
    first_half = train(tiny_config(tmp_path / "b", epochs=2), data)
    resumed = train(tiny_config(tmp_path / "b", epochs=4,
                                load=str(first_half.last_checkpoint)), data)
    assert results_only(resumed.history) == results_only(straight.history)
    lines = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_metrics_checkpoints_and_report_callback(tmp_path, data):
    heard = []
    result = train(tiny_config(tmp_path, epochs=3, keep_checkpoints=2), data,
                   report=lambda metrics, state: heard.append((metrics, state.epoch)))
    assert [epoch for _, epoch in heard] == [1, 2, 3]
    expected = {"epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr",
                "epoch_seconds", "samples_per_s", "train_samples", *COST_KEYS}
    if torch.cuda.is_available():  # device "auto" trains on the GPU there
        expected.add("gpu_peak_mem_mb")
    assert set(heard[0][0]) == expected
    assert all(0 <= m["val_dice"] <= 1 and m["samples_per_s"] > 0 for m, _ in heard)
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["checkpoint_epoch2.pth", "checkpoint_epoch3.pth"]
    payload = torch.load(result.last_checkpoint, weights_only=True)  # safe loading works
    assert payload["epoch"] == 3 and payload["mask_values"] == [0, 255]
    assert payload["config"]["width"] == 4 and set(payload) >= {"optimizer", "scheduler", "rng"}


def test_pytorch_unet_weights_start_training(tmp_path, data, caplog):
    trained = train(tiny_config(tmp_path / "a", epochs=1), data)
    weights = torch.load(trained.last_checkpoint, weights_only=True)["model"]
    weights["mask_values"] = [0, 255]  # Pytorch-UNet's format: state_dict + mask_values
    path = tmp_path / "pytorch_unet.pth"
    torch.save(weights, path)
    with caplog.at_level(logging.WARNING):
        warm = train(tiny_config(tmp_path / "b", epochs=1, load=str(path)), data)
    cold = train(tiny_config(tmp_path / "c", epochs=1), data)
    assert "weights only (Pytorch-UNet format)" in caplog.text
    assert warm.history[0]["epoch"] == 1
    assert warm.history[0]["train_loss"] != cold.history[0]["train_loss"]


def test_resume_refuses_another_architecture(tmp_path, data):
    first = train(tiny_config(tmp_path / "a", epochs=1), data)
    with pytest.raises(CheckpointError, match="trained with width=4; this run asks for width=8"):
        train(tiny_config(tmp_path / "b", width=8, load=str(first.last_checkpoint)), data)


def test_binary_single_class_output(tmp_path, data):
    result = train(tiny_config(tmp_path, classes=1, epochs=1), data)
    assert 0 <= result.history[0]["val_dice"] <= 1


def test_adamw_and_cosine(tmp_path, data):
    result = train(tiny_config(tmp_path, optimizer="adamw", scheduler="cosine", epochs=2), data)
    assert result.history[1]["lr"] < result.history[0]["lr"]



@pytest.mark.slow  # inductor builds C++ kernels: minutes on 2 busy cores (562 s measured)
def test_compile_option_trains_and_reports(tmp_path, data):
    """compile=True wraps the model in torch.compile (inductor builds C++ kernels on CPU); the
    checkpoint keeps the plain model's parameter names, so eager runs can load it."""
    import shutil

    if not hasattr(torch, "compile") or not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not available here")
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("torch.compile on CPU needs a C compiler")
    heard = []
    result = train(tiny_config(tmp_path, epochs=1, compile=True), data,
                   report=lambda metrics, state: heard.append(metrics))
    assert len(heard) == 1 and 0 <= heard[0]["val_dice"] <= 1 and heard[0]["samples_per_s"] > 0
    weights = torch.load(result.last_checkpoint, weights_only=True)["model"]
    assert not any(name.startswith("_orig_mod.") for name in weights)
    eager = train(tiny_config(tmp_path / "eager", epochs=2, load=str(result.last_checkpoint)),
                  data)
    assert [m["epoch"] for m in eager.history] == [2]
