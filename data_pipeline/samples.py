"""Write a few image/mask pairs as PNGs, so a user can see what a model will learn from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data_pipeline.data import SegmentationData


def write_samples(data: SegmentationData, out_dir: str | Path, count: int = 8) -> list[Path]:
    """Per sample: ID.png (image) and ID_mask.png (mask, original values); plus a contact
    sheet samples.png with images above their masks."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    for i in range(min(count, len(data))):
        image, mask = data.images[i], mask_to_values(data.masks[i], data.mask_values)
        image_rgb = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
        Image.fromarray(image_rgb).save(out_dir / f"{data.ids[i]}.png")
        Image.fromarray(mask).save(out_dir / f"{data.ids[i]}_mask.png")
        written += [out_dir / f"{data.ids[i]}.png", out_dir / f"{data.ids[i]}_mask.png"]
        mask_rgb = mask if mask.ndim == 3 else np.repeat(mask[..., None], 3, -1)
        tiles.append(np.concatenate([image_rgb, mask_rgb], axis=0))
    if tiles:
        height = max(tile.shape[0] for tile in tiles)  # a folder may mix sizes: pad below
        tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
        Image.fromarray(np.concatenate(tiles, axis=1)).save(out_dir / "samples.png")
        written.append(out_dir / "samples.png")
    return written


def mask_to_values(mask: np.ndarray, mask_values: list) -> np.ndarray:
    """Class indices back to the values the mask files used (Pytorch-UNet's mask_to_image)."""
    values = np.asarray(mask_values)
    out = values[mask]
    return out.astype(np.uint8)
