"""The decoded data set every training run receives: uint8 arrays, memory-mapped from the disk
cache (data_pipeline/cache.py) or, in tests, held in memory.

Decoding happens once per folder and decode settings; trials and their loader workers map the
same cache files read-only, so nothing here may be mutated after construction. A cache-backed
set pickles as its small ``cache.CacheRef`` alone: Ray's object store carries a path and a
fingerprint, never pixels, and each process maps the files itself.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentationData:
    # (N, H, W, C) uint8 when every image has one size; otherwise a tuple of (H, W, C) views.
    images: np.ndarray | tuple
    masks: np.ndarray | tuple  # (N, H, W) uint8 class indices (0 .. n_classes-1), same layout
    mask_values: list  # mask_values[k] is the value class k had in the mask files
    ids: list[str]
    source: dict = field(default_factory=dict)  # how it was made: generator settings or folder
    # data_pipeline.cache.CacheRef when the arrays are memory-mapped from the disk cache
    cache: object | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def channels(self) -> int:
        return self.images[0].shape[-1]

    def sizes(self) -> dict[tuple[int, int], int]:
        """{(height, width): image count}, from shapes alone (no pixel is read)."""
        if isinstance(self.images, np.ndarray):
            return {tuple(self.images.shape[1:3]): len(self.images)}
        return dict(Counter(tuple(image.shape[:2]) for image in self.images))

    def describe_sizes(self) -> str:
        """e.g. '128x128x3' or '2 sizes: 20x16 (3), 32x24 (2)' (width x height)."""
        sizes = self.sizes()
        if len(sizes) == 1:
            (height, width), = sizes
            return f"{width}x{height}x{self.channels}"
        return f"{len(sizes)} sizes: " + ", ".join(f"{w}x{h} ({n})"
                                                   for (h, w), n in sorted(sizes.items()))

    def fingerprint(self) -> str:
        """Content id: identical pixels and labels give the same id (for data set versions).
        A cached set's is computed from its source files when the cache is built."""
        if self.cache is not None:
            return self.cache.fingerprint
        digest = hashlib.sha256()
        for arrays in (self.images, self.masks):
            for array in (arrays if isinstance(arrays, tuple) else [arrays]):
                digest.update(str(array.shape).encode())
                digest.update(np.ascontiguousarray(array).data)
        digest.update(repr(self.mask_values).encode())
        return digest.hexdigest()[:16]

    def __reduce_ex__(self, protocol):
        if self.cache is None:
            return super().__reduce_ex__(protocol)
        return self.cache.open, ()  # the receiving process maps the cache files itself


def split_indices(n: int, val_percent: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: a function of (n, val_percent, split_seed) only, so every
    trial of a sweep, whatever its training seed, is scored on the same images."""
    if n < 2:
        raise ValueError(f"need at least 2 images to split into train and validation, got {n}")
    n_val = min(n - 1, max(1, int(round(n * val_percent / 100))))
    order = np.random.default_rng(split_seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
