"""A short throughput probe: training samples/s of a config for a few steps, and the CPU its
data-loading workers really use. The sweep runs it once per candidate num_workers to fix the
fastest for every trial (num_workers changes speed, never results), and reserves the workers'
CPUs at what they were measured to use.
"""
from __future__ import annotations

import resource
import time

import torch
from torch.utils.data import DataLoader

from data_pipeline import SegmentationData, split_indices
from data_pipeline.loader import SegmentationDataset
from models import create_model
from training.config import TrainConfig
from training.determinism import resolve_device, seed_everything
from training.loop import make_optimizer, to_device
from training.losses import segmentation_loss


def probe_throughput(config: TrainConfig, data: SegmentationData, steps: int,
                     warmup: int = 3) -> dict:
    """Samples/s over ``steps`` training steps after ``warmup`` ones (worker start-up, first
    allocations), and ``worker_cpu_per_s``: CPU seconds all loader workers used per second."""
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)  # as the trial will run
    try:
        seed_everything(config.seed)
        model = create_model(config.model, n_channels=data.channels, n_classes=config.classes,
                             bilinear=config.bilinear, width=config.width)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(device=device, memory_format=memory_format).train()
        optimizer = make_optimizer(config, model)
        loader = probe_loader(config, data, (warmup + steps) * config.batch_size,
                              pin=config.pin_memory and device.type == "cuda")
        # Loader workers are child processes: once joined, their CPU time is in RUSAGE_CHILDREN.
        cpu_before = children_cpu_s()
        began = time.perf_counter()
        batches = iter(loader)
        for step, (images, masks) in enumerate(batches):
            if step == warmup:
                timed_from = time.perf_counter()
            images, masks = to_device(images, masks, device, memory_format)
            loss = segmentation_loss(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ended = time.perf_counter()
        del batches  # joins the workers (so their CPU time is counted)
        worker_cpu = children_cpu_s() - cpu_before
    finally:
        torch.set_num_threads(threads)
    return {"samples_per_s": steps * config.batch_size / (ended - timed_from),
            "worker_cpu_per_s": worker_cpu / (ended - began), "steps": steps}


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
