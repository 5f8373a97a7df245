"""Seeded, num_workers-invariant data loading.

PyTorch seeds each loader worker separately, so random augmentations usually change with
num_workers. Here every random choice is a pure function of (seed, epoch, sample index) and the
shuffle order a function of (seed, epoch); the sampler, which runs in the main process, hands
each worker ``(epoch, position)`` keys. num_workers and pin_memory then change speed only.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (order matters, no collisions in practice)."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


class EpochSampler(Sampler):
    """Yields (epoch, position) keys; the order is a function of (seed, epoch) only."""

    def __init__(self, size: int, seed: int, shuffle: bool):
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = range(self.size)
        return iter([(self.epoch, position) for position in order])


class SegmentationDataset(Dataset):
    """Views into the shared uint8 arrays; returns uint8 CHW image and int64 HW mask tensors.

    Images stay uint8 until they reach the device (4x less to copy and pin than float32).
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, indices: np.ndarray, seed: int,
                 augment: bool):
        self.images, self.masks, self.indices = images, masks, np.asarray(indices)
        self.seed, self.augment = seed, augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        epoch, position = key
        index = int(self.indices[position])
        image, mask = self.images[index], self.masks[index]
        if self.augment:
            image, mask = augment(image, mask, np.random.default_rng([self.seed, epoch, index]))
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image, torch.from_numpy(mask.astype(np.int64))


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """Flips, 90-degree turns (square images) and brightness/contrast, all from ``rng``."""
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], mask[::-1]
    turns = int(rng.integers(4))
    if turns and image.shape[0] == image.shape[1]:
        image, mask = np.rot90(image, turns), np.rot90(mask, turns)
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    # A 256-entry lookup table applies the jitter to uint8 pixels without a float copy.
    table = np.clip(np.arange(256) * contrast + brightness, 0, 255).astype(np.uint8)
    return table[image], np.ascontiguousarray(mask)


def make_loader(dataset: SegmentationDataset, batch_size: int, seed: int, shuffle: bool,
                num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed, shuffle),
        num_workers=num_workers, pin_memory=pin_memory,
        # Workers would otherwise restart (and re-import) every epoch.
        persistent_workers=num_workers > 0,
    )
