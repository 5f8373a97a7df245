"""The decoded data set every training run receives: uint8 arrays held in memory.

Decoding happens once (per command, per sweep); trials share these arrays read-only through
Ray's object store, so nothing here may be mutated after construction.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentationData:
    images: np.ndarray  # (N, H, W, C) uint8
    masks: np.ndarray  # (N, H, W) uint8 class indices (0 .. n_classes-1)
    mask_values: list  # mask_values[k] is the value class k had in the mask files
    ids: list[str]
    source: dict = field(default_factory=dict)  # how it was made: generator settings or folder

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[-1]

    def fingerprint(self) -> str:
        """Content hash: identical pixels and labels give the same id (for data set versions)."""
        digest = hashlib.sha256()
        for array in (self.images, self.masks):
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).data)
        digest.update(repr(self.mask_values).encode())
        return digest.hexdigest()[:16]


def split_indices(n: int, val_percent: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: a function of (n, val_percent, split_seed) only, so every
    trial of a sweep, whatever its training seed, is scored on the same images."""
    if n < 2:
        raise ValueError(f"need at least 2 images to split into train and validation, got {n}")
    n_val = min(n - 1, max(1, int(round(n * val_percent / 100))))
    order = np.random.default_rng(split_seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
