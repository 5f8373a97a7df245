"""Load a data set from the settings a config gives: always through the decoded disk cache
(data_pipeline/cache.py), so a folder and the synthetic set take the same path."""
from __future__ import annotations

from data_pipeline.cache import data_spec, load_cached
from data_pipeline.data import SegmentationData


def load_data(data_dir: str = "", *, scale: float = 1.0, mask_suffix: str = "auto",
              n_classes: int = 2, synthetic_images: int = 160, synthetic_size: int = 128,
              synthetic_seed: int = 0, cache_dir: str = "",
              crop: int | None = None) -> SegmentationData:
    """A folder in Pytorch-UNet's layout, or (empty data_dir) the synthetic crack set, mapped
    from its cache. ``crop`` (0: whole images) is checked against the image sizes with every
    other fault; None leaves that check to the training loop."""
    spec = data_spec(data_dir, scale, mask_suffix, synthetic_images, synthetic_size,
                     synthetic_seed)
    return load_cached(spec, cache_dir, n_classes=n_classes, crop=crop)
