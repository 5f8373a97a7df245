"""Folder data sets in Pytorch-UNet's layout: DIR/imgs/ID.ext and DIR/masks/ID<suffix>.ext.

Every file is checked before anything trains, and all faults are reported together, one line
each naming the file, so a user fixes a folder in one pass instead of one crash at a time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_pipeline.data import SegmentationData

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif"}
# What PIL raises for a file it cannot (or will not) decode: a header claiming more pixels than
# Image.MAX_IMAGE_PIXELS (a decompression bomb) is DecompressionBombError, not an OSError.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError,
              Image.DecompressionBombError)


class DataFolderError(ValueError):
    """A folder data set has faults; ``faults`` holds one line per fault."""

    def __init__(self, root: Path, faults: list[str]):
        self.faults = faults
        super().__init__(f"{len(faults)} problem(s) in data set {root}:\n  " + "\n  ".join(faults))


def load_folder(root: str | Path, scale: float = 1.0, mask_suffix: str = "auto",
                n_classes: int = 2) -> SegmentationData:
    root = Path(root)
    image_files, mask_files, faults = pair_files(root, mask_suffix)
    images, masks, ids = [], [], []
    for image_id in sorted(image_files):
        pair = read_pair(image_files[image_id], mask_files.get(image_id), scale, faults)
        if pair is not None:
            images.append(pair[0])
            masks.append(pair[1])
            ids.append(image_id)
    check_uniform_sizes(images, ids, image_files, faults)
    check_mask_kinds(masks, ids, mask_files, faults)
    mask_values = sorted_unique_values(masks) if not faults else []
    if masks and not faults and len(mask_values) < 2:
        faults.append(f"{root / 'masks'}: every mask holds the single value {mask_values}: "
                      "nothing to segment")
    if len(mask_values) > max(n_classes, 2):
        faults.append(f"{root / 'masks'}: masks hold {len(mask_values)} distinct values "
                      f"{mask_values[:8]} but classes={n_classes}")
    if faults:
        raise DataFolderError(root, faults)
    return SegmentationData(
        images=np.stack(images), masks=to_class_indices(np.stack(masks), mask_values),
        mask_values=mask_values, ids=ids,
        source={"kind": "folder", "path": str(root.resolve()), "scale": scale,
                "mask_suffix": mask_suffix, "images": len(ids)},
    )


def pair_files(root: Path, mask_suffix: str) -> tuple[dict, dict, list[str]]:
    faults: list[str] = []
    image_dir, mask_dir = root / "imgs", root / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            faults.append(f"{folder}: folder missing (expected {root}/imgs and {root}/masks)")
    if faults:
        raise DataFolderError(root, faults)
    images = {p.stem: p for p in files_in(image_dir, faults)}
    masks_by_stem = {p.stem: p for p in files_in(mask_dir, faults)}
    if not images:
        faults.append(f"{image_dir}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    masks: dict[str, Path] = {}
    for stem, path in masks_by_stem.items():
        image_id = mask_id(stem, images, mask_suffix)
        if image_id is None:
            faults.append(f"{path}: mask without image")
        else:
            masks[image_id] = path
    for image_id, path in images.items():
        if image_id not in masks:
            faults.append(f"{path}: image without mask")
    return images, masks, faults


def files_in(folder: Path, faults: list[str]) -> list[Path]:
    found = sorted(p for p in folder.iterdir()
                   if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)
    for path in found:
        if path.is_symlink() and not path.exists():  # a loop, or pointing at nothing
            faults.append(f"{path}: broken symbolic link (a loop, or its target is missing)")
    return [p for p in found if p.is_file()]


def mask_id(stem: str, images: dict, mask_suffix: str) -> str | None:
    """The image id a mask file belongs to; 'auto' accepts ID_mask.ext and ID.ext."""
    suffixes = ["_mask", ""] if mask_suffix == "auto" else [mask_suffix]
    for suffix in suffixes:
        if suffix and stem.endswith(suffix) and stem[: -len(suffix)] in images:
            return stem[: -len(suffix)]
        if not suffix and stem in images:
            return stem
    return None


def read_pair(image_path: Path, mask_path: Path | None, scale: float, faults: list[str]):
    image = read_image(image_path, faults)
    mask = read_image(mask_path, faults) if mask_path else None
    if image is None or mask is None:
        return None
    if image.size != mask.size:
        faults.append(f"{image_path}: image is {image.size[0]}x{image.size[1]} but its mask "
                      f"{mask_path.name} is {mask.size[0]}x{mask.size[1]}")
        return None
    width, height = image.size
    new_size = (int(scale * width), int(scale * height))
    if min(new_size) < 1:
        faults.append(f"{image_path}: scale {scale} leaves no pixels")
        return None
    if new_size != image.size:  # Pytorch-UNet's resampling: bicubic images, nearest masks
        image = image.resize(new_size, Image.BICUBIC)
        mask = mask.resize(new_size, Image.NEAREST)
    image = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    pixels = np.asarray(image, np.uint8)
    return (pixels[..., None] if pixels.ndim == 2 else pixels), np.asarray(mask)


def read_image(path: Path, faults: list[str]):
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()  # closing the file frees the original's pixels
    except UNREADABLE as error:
        faults.append(f"{path}: unreadable image ({type(error).__name__}: "
                      f"{(str(error).splitlines() or [''])[0][:100]})")
        return None


def check_uniform_sizes(images: list, ids: list[str], files: dict, faults: list[str]) -> None:
    if not images:
        return
    first = images[0].shape
    for image, image_id in zip(images, ids):
        if image.shape != first:
            faults.append(f"{files[image_id]}: size {image.shape[1]}x{image.shape[0]}x"
                          f"{image.shape[2]} differs from {files[ids[0]].name}'s "
                          f"{first[1]}x{first[0]}x{first[2]} (batches need one size)")


def check_mask_kinds(masks: list, ids: list[str], files: dict, faults: list[str]) -> None:
    """Grey masks and colour masks cannot share one set of mask_values."""
    if masks and len({m.ndim for m in masks}) > 1:
        grey = [files[i].name for m, i in zip(masks, ids) if m.ndim == 2][:3]
        colour = [files[i].name for m, i in zip(masks, ids) if m.ndim == 3][:3]
        faults.append(f"masks mix grey ({', '.join(grey)}) and colour ({', '.join(colour)}) "
                      "files: save them all one way")


def sorted_unique_values(masks: list[np.ndarray]) -> list:
    """Pytorch-UNet's mask_values: the sorted distinct grey levels (or RGB colours)."""
    if not masks:
        return []
    if masks[0].ndim == 2:
        return sorted(int(v) for v in np.unique(np.concatenate([m.ravel() for m in masks])))
    colours = np.unique(np.concatenate([m.reshape(-1, m.shape[-1]) for m in masks]), axis=0)
    return [list(map(int, c)) for c in colours]


def to_class_indices(masks: np.ndarray, mask_values: list) -> np.ndarray:
    out = np.zeros(masks.shape[:3], np.uint8)
    for index, value in enumerate(mask_values):
        hit = (masks == value) if masks.ndim == 3 else (masks == np.asarray(value)).all(-1)
        out[hit] = index
    return out
