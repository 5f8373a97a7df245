"""A short throughput probe: training samples/s of a config for a few steps, and the CPU its
data-loading workers really use. The sweep runs it once per candidate num_workers to fix the
fastest for every trial (num_workers changes speed, never results), and reserves the workers'
CPUs at what they were measured to use.
"""
from __future__ import annotations

import contextlib
import resource
import time
import warnings
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from data_pipeline import SegmentationData, split_indices
from data_pipeline.loader import SegmentationDataset
from training.config import TrainConfig
from training.determinism import (
    configure_determinism,
    quiet_determinism_warnings,
    resolve_device,
    seed_everything,
)
from training.loop import build_training, to_device, train_step


def probe_throughput(config: TrainConfig, data: SegmentationData, steps: int,
                     warmup: int = 3) -> dict:
    """Samples/s over ``steps`` training steps after ``warmup`` ones (worker start-up, first
    allocations, a compile), and ``worker_cpu_per_s``: CPU seconds all loader workers used per
    second. The model, optimizer, scaler and step are the loop's own (autocast, grad scaling
    and clipping as the trial has them), so the speed is the trial's."""
    device = resolve_device(config.device)
    with trial_settings(config, device):
        seed_everything(config.seed)
        training = build_training(config, data.channels, device)
        training.net.train()
        loader = probe_loader(config, data, (warmup + steps) * config.batch_size,
                              pin=config.pin_memory and device.type == "cuda")
        # Loader workers are child processes: once joined, their CPU time is in RUSAGE_CHILDREN.
        cpu_before = children_cpu_s()
        began = time.perf_counter()
        batches = iter(loader)
        for step, (images, masks) in enumerate(batches):
            if step == warmup:
                timed_from = time.perf_counter()
            images, masks = to_device(images, masks, device, training.memory_format)
            train_step(training.net, images, masks, training.optimizer, training.scaler,
                       config.grad_clip, training.amp_dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ended = time.perf_counter()
        del batches  # joins the workers (so their CPU time is counted)
        worker_cpu = children_cpu_s() - cpu_before
    return {"samples_per_s": steps * config.batch_size / (ended - timed_from),
            "worker_cpu_per_s": worker_cpu / (ended - began), "steps": steps}


@contextlib.contextmanager
def trial_settings(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Threads and kernels as the trial's loop sets them (both change speed), restored after:
    the probe runs in the sweep's driver, whose own settings stay as they were."""
    threads = torch.get_num_threads()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        with warnings.catch_warnings():
            configure_determinism(device, config.deterministic)
            quiet_determinism_warnings()
            if config.threads:
                torch.set_num_threads(config.threads)
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


def probe_loader(config: TrainConfig, data: SegmentationData, samples: int,
                 pin: bool) -> DataLoader:
    """The training loader the loop builds, over as many (epoch, position) keys as the probe
    needs, so one iterator (one set of workers) serves every step."""
    train_idx, _ = split_indices(len(data), config.val_percent, config.split_seed)
    keys = [(epoch, position) for epoch in range(samples // len(train_idx) + 1)
            for position in range(len(train_idx))][:samples]
    dataset = SegmentationDataset(data.images, data.masks, train_idx, config.seed, config.augment)
    return DataLoader(dataset, batch_size=config.batch_size, sampler=keys, drop_last=True,
                      num_workers=config.num_workers, pin_memory=pin)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
