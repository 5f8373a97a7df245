"""The two sides the loop benchmarks compare, each run inside a child process (bench.child):
our loop (decode the folder once, then training.loop.train) and the reference loop.

Both return when each epoch ended, so throughput can leave out the first epoch's one-off costs,
and the final val_dice computed the same way (counts summed over the validation set).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import torch

from bench.child import wait_for_go
from bench.measure import steady_throughput


@dataclass
class LoopSpec:
    """What both sides share. ``width`` 64 is the full Pytorch-UNet network."""
    data_dir: str
    scale: float = 0.5
    width: int = 16
    epochs: int = 3
    batch_size: int = 4
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-8
    grad_clip: float = 1.0
    val_percent: float = 10.0
    split_seed: int = 0
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    reference_workers: int | None = None  # None: as num_workers (Pytorch-UNet: os.cpu_count())

    def to_kwargs(self) -> dict:
        return asdict(self)


def warm_up(device: torch.device) -> None:
    """Start CUDA and cuDNN before the clock: a side should not be charged for the context."""
    if device.type != "cuda":
        return
    torch.cuda.init()
    conv = torch.nn.Conv2d(3, 8, 3).to(device)
    conv(torch.randn(2, 3, 32, 32, device=device)).sum().backward()
    torch.cuda.synchronize(device)


def train_ours(spec: dict, out_dir: str, amp: bool = True, channels_last: bool = False,
               deterministic: bool = True, barrier_dir: str | None = None,
               tag: str = "ours") -> dict:
    from data_pipeline import load_data
    from training.config import TrainConfig
    from training.loop import train

    spec = LoopSpec(**spec)
    # Our loop runs deterministic cuBLAS, which needs this before CUDA starts (in warm_up).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    warm_up(torch.device(spec.device))
    loaded = time.perf_counter()
    data = load_data(spec.data_dir, scale=spec.scale)
    data_seconds = time.perf_counter() - loaded
    config = TrainConfig(
        data_dir=spec.data_dir, scale=spec.scale, width=spec.width, epochs=spec.epochs,
        batch_size=spec.batch_size, lr=spec.lr, momentum=spec.momentum,
        weight_decay=spec.weight_decay, grad_clip=spec.grad_clip, val_percent=spec.val_percent,
        split_seed=spec.split_seed, seed=spec.seed, device=spec.device,
        num_workers=spec.num_workers, augment=False,  # the reference has no augmentation
        amp=amp, channels_last=channels_last, deterministic=deterministic, out_dir=out_dir)
    epoch_ends: list[float] = []
    go = wait_for_go(barrier_dir, tag)
    start = time.perf_counter()
    result = train(config, data, report=lambda metrics, state: epoch_ends.append(
        time.perf_counter()))
    n_train = len(data) - round_val(len(data), spec.val_percent)
    record = timing_record(n_train, start, epoch_ends, go, data_seconds,
                           val_dice=result.history[-1]["val_dice"])
    record["peak_mem_mb"] = max(m.get("gpu_peak_mem_mb", 0.0) for m in result.history)
    record["final_lr"] = result.history[-1]["lr"]
    # An epoch's time beyond its training steps: validation, checkpoint, reporting.
    record["validation_s"] = sum(m["epoch_seconds"] - n_train / m["samples_per_s"]
                                 for m in result.history)
    return record


def train_reference_side(spec: dict, out_dir: str, amp: bool = False,
                         barrier_dir: str | None = None, tag: str = "reference") -> dict:
    from bench.data_folder import folder_ids, split_ids
    from bench.reference_loop import train_reference

    spec = LoopSpec(**spec)
    warm_up(torch.device(spec.device))
    train_ids, val_ids = split_ids(folder_ids(spec.data_dir), spec.val_percent, spec.split_seed)
    epoch_ends: list[float] = []
    go = wait_for_go(barrier_dir, tag)
    start = time.perf_counter()
    outcome = train_reference(
        spec.data_dir, train_ids, val_ids, scale=spec.scale, width=spec.width,
        epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, momentum=spec.momentum,
        weight_decay=spec.weight_decay, grad_clip=spec.grad_clip, device=spec.device, amp=amp,
        num_workers=spec.num_workers if spec.reference_workers is None else spec.reference_workers,
        out_dir=out_dir, seed=spec.seed,
        on_epoch=lambda epoch: epoch_ends.append(time.perf_counter()))
    record = timing_record(len(train_ids), start, epoch_ends, go, 0.0,
                           val_dice=outcome["val_dice"])
    record["reference_score"] = outcome["reference_score"]
    record["final_lr"] = outcome["final_lr"]
    record["validation_s"] = outcome["validation_s"]
    record["peak_mem_mb"] = (torch.cuda.max_memory_allocated() / 2**20
                             if torch.device(spec.device).type == "cuda" else 0.0)
    return record


def round_val(n: int, val_percent: float) -> int:
    """How many images split_indices puts in validation."""
    return min(n - 1, max(1, int(round(n * val_percent / 100))))


def timing_record(n_train: int, start: float, epoch_ends: list[float], go: float,
                  data_seconds: float, val_dice: float) -> dict:
    return {
        "n_train": n_train,
        "samples_per_s": steady_throughput(n_train, epoch_ends, start),
        "first_epoch_s": epoch_ends[0] - start,
        "train_s": epoch_ends[-1] - start,
        "data_s": data_seconds,
        "val_dice": val_dice,
        # Wall-clock (time.time) of the go signal and the end, for runs sharing a device.
        "go": go, "end": go + (epoch_ends[-1] - start),
    }
