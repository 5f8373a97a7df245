"""Decode a data set once, from the settings a config gives."""
from __future__ import annotations

from data_pipeline.data import SegmentationData
from data_pipeline.folder import load_folder
from data_pipeline.synthetic import CRACK_VALUE, make_synthetic


def load_data(data_dir: str = "", *, scale: float = 1.0, mask_suffix: str = "auto",
              n_classes: int = 2, synthetic_images: int = 160, synthetic_size: int = 128,
              synthetic_seed: int = 0) -> SegmentationData:
    """A folder in Pytorch-UNet's layout, or (empty data_dir) the synthetic crack set."""
    if data_dir:
        return load_folder(data_dir, scale=scale, mask_suffix=mask_suffix, n_classes=n_classes)
    size = max(16, int(round(synthetic_size * scale)))
    images, masks = make_synthetic(synthetic_images, size, synthetic_seed)
    return SegmentationData(
        images=images, masks=(masks == CRACK_VALUE).astype("uint8"), mask_values=[0, CRACK_VALUE],
        ids=[f"synthetic_{i:05d}" for i in range(synthetic_images)],
        source={"kind": "synthetic", "images": synthetic_images, "size": size,
                "seed": synthetic_seed},
    )
