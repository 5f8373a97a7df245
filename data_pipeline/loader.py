"""Seeded, num_workers-invariant data loading.

PyTorch seeds each loader worker separately, so random augmentations usually change with
num_workers. Here every random choice is a pure function of (seed, epoch, sample index) and the
shuffle order a function of (seed, epoch); the sampler, which runs in the main process, hands
each worker ``(epoch, position)`` keys. num_workers and pin_memory then change speed only.
Random training crops (for folders mixing image sizes) are such a choice too; validation takes
whole images, batched by size, so a score never depends on where a crop fell.
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


class SizeBatchSampler(Sampler):
    """Whole-image batches in index order, each of one size (mixed-size folders): a batch
    never mixes sizes, and which images share a batch is fixed. Scores sum per-image counts,
    so the grouping does not change them."""

    def __init__(self, shapes: list[tuple], batch_size: int):
        groups: dict[tuple, list[int]] = {}
        for position, shape in enumerate(shapes):
            groups.setdefault(shape, []).append(position)
        self.batches = [[(0, p) for p in group[start:start + batch_size]]
                        for group in groups.values() for start in range(0, len(group), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


CROP_STREAM = 1  # the crop's own random stream: crop=0 leaves the augmentations unchanged


class SegmentationDataset(Dataset):
    """Views into the shared uint8 arrays; returns uint8 CHW image and int64 HW mask tensors.

    Images stay uint8 until they reach the device (4x less to copy and pin than float32).
    With ``crop``, each item is a random crop x crop window, only its pages read from the cache.
    """

    def __init__(self, images, masks, indices: np.ndarray, seed: int, augment: bool,
                 crop: int = 0):
        self.images, self.masks, self.indices = images, masks, np.asarray(indices)
        self.seed, self.augment, self.crop = seed, augment, crop

    def shapes(self) -> list[tuple]:
        return [tuple(self.images[int(i)].shape) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        epoch, position = key
        index = int(self.indices[position])
        image, mask = self.images[index], self.masks[index]
        if self.crop:
            image, mask = random_crop(image, mask, self.crop,
                                      np.random.default_rng([self.seed, epoch, index, CROP_STREAM]))
        if self.augment:
            image, mask = augment(image, mask, np.random.default_rng([self.seed, epoch, index]))
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image, torch.from_numpy(mask.astype(np.int64))


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator):
    """A size x size window at a position drawn from ``rng`` (images are at least that big)."""
    top = int(rng.integers(image.shape[0] - size + 1))
    left = int(rng.integers(image.shape[1] - size + 1))
    return image[top:top + size, left:left + size], mask[top:top + size, left:left + size]


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


def make_eval_loader(dataset: SegmentationDataset, batch_size: int, num_workers: int = 0,
                     pin_memory: bool = False) -> DataLoader:
    """Whole images in index order, batched by size (one batch shape per size)."""
    return DataLoader(dataset, batch_sampler=SizeBatchSampler(dataset.shapes(), batch_size),
                      num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0)
