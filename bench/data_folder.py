"""The synthetic crack set written as a folder in Pytorch-UNet's layout, so that the reference
loop (which reads files) and ours (which decodes the folder once) train on the same pixels."""
from __future__ import annotations

import multiprocessing
import shutil
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from data_pipeline.synthetic import synthetic_pair


def write_crack_folder(root: Path, images: int, size: int, seed: int = 0,
                       processes: int = 1, height: int | None = None,
                       distinct: int | None = None, max_size: int | None = None) -> Path:
    """ROOT/imgs/crack_00000.png and ROOT/masks/crack_00000_mask.png (0/255), ``size`` px
    (``height`` rows of it, if given: e.g. Carvana's 959x640 at scale 0.5). Image i is the
    synthetic set's image i (a function of seed and i), however it is made; with ``distinct``,
    image i is a copy of image i % distinct (big folders in minutes; each file still decodes);
    with ``max_size``, image i is square with a side drawn from [size, max_size] (a function of
    seed and i): a folder of mixed sizes."""
    root = Path(root)
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    made = min(images, distinct or images)
    write = partial(write_pair, root, size, seed, height, max_size)
    if processes > 1 and made > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.map(write, range(made), chunksize=max(1, made // (4 * processes)))
    else:
        for i in range(made):
            write(i)
    for i in range(made, images):
        for sub, suffix in (("imgs", ""), ("masks", "_mask")):
            shutil.copyfile(root / sub / f"crack_{i % made:05d}{suffix}.png",
                            root / sub / f"crack_{i:05d}{suffix}.png")
    return root


def write_pair(root: Path, size: int, seed: int, height: int | None, max_size: int | None,
               index: int) -> None:
    if max_size:  # the side from its own stream: image i's pixels stay a function of (seed, i)
        size = int(np.random.default_rng([seed, index, 1]).integers(size, max_size + 1))
    image, mask = synthetic_pair(size, np.random.default_rng([seed, index]))
    image, mask = image[:height], mask[:height]
    Image.fromarray(image).save(root / "imgs" / f"crack_{index:05d}.png")
    Image.fromarray(mask).save(root / "masks" / f"crack_{index:05d}_mask.png")


def folder_ids(root: Path) -> list[str]:
    """Image ids in the order our folder loader uses (sorted stems)."""
    return sorted(p.stem for p in (Path(root) / "imgs").iterdir() if p.suffix == ".png")


def split_ids(ids: list[str], val_percent: float, split_seed: int) -> tuple[list, list]:
    """The same train/validation split our loop makes (data_pipeline.split_indices)."""
    from data_pipeline import split_indices

    train_idx, val_idx = split_indices(len(ids), val_percent, split_seed)
    return [ids[i] for i in train_idx], [ids[i] for i in val_idx]


def image_bytes(root: Path) -> int:
    return int(sum(p.stat().st_size for p in Path(root).rglob("*.png")))
