"""Folder data sets in Pytorch-UNet's layout: DIR/imgs/ID.ext and DIR/masks/ID<suffix>.ext.

Every file is checked before anything is decoded into the cache, and all faults are reported
together, one line each naming the file, so a user fixes a folder in one pass instead of one
crash at a time. The check (``scan_folder``) reads image headers and decodes masks only (their
values are the classes); ``decode_pair`` then turns one pair into cache-ready arrays.
"""
from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_pipeline.parallel import parallel_map

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


@dataclass
class FolderScan:
    """A checked folder: what the cache build decodes, in id order."""
    ids: list[str]
    image_files: list[Path]
    mask_files: list[Path]
    shapes: list[tuple[int, int, int]]  # (height, width, channels) after scaling
    mask_values: list


def scan_folder(root: str | Path, scale: float = 1.0, mask_suffix: str = "auto",
                n_classes: int = 2, crop: int | None = None, workers: int = 0) -> FolderScan:
    """Check every file; raise DataFolderError listing every fault, or return the scan."""
    root = Path(root)
    image_files, mask_files, faults = pair_files(root, mask_suffix)
    ids = sorted(image_files)  # an image without a mask is still checked for readability
    probes = list(parallel_map(lambda i: probe_pair(image_files[i], mask_files.get(i), scale),
                               ids, desc="checking"))
    good = [(i, p) for i, p in zip(ids, probes) if isinstance(p, tuple)]
    faults += [fault for p in probes if isinstance(p, list) for fault in p]
    shapes = [p[0] for _, p in good]
    faults += size_faults(shapes, [image_files[i].name for i, _ in good], crop)
    if len({p[1] for _, p in good}) > 1:
        grey = [mask_files[i].name for i, p in good if p[1] == 2][:3]
        colour = [mask_files[i].name for i, p in good if p[1] == 3][:3]
        faults.append(f"masks mix grey ({', '.join(grey)}) and colour ({', '.join(colour)}) "
                      "files: save them all one way")
    mask_values = sorted_unique_values([p[2] for _, p in good]) if not faults else []
    if good and not faults and len(mask_values) < 2:
        faults.append(f"{root / 'masks'}: every mask holds the single value {mask_values}: "
                      "nothing to segment")
    faults += class_faults(root, mask_values, n_classes)
    if faults:
        raise DataFolderError(root, faults)
    return FolderScan([i for i, _ in good], [image_files[i] for i, _ in good],
                      [mask_files[i] for i, _ in good], shapes, mask_values)


def class_faults(root: Path, mask_values: list, n_classes: int) -> list[str]:
    if len(mask_values) > max(n_classes, 2):
        return [f"{root / 'masks'}: masks hold {len(mask_values)} distinct values "
                f"{mask_values[:8]} but classes={n_classes}"]
    return []


def size_faults(shapes: list[tuple], names: list[str], crop: int | None) -> list[str]:
    """Batches need one size: one line if images mix sizes and no crop is set (crop None:
    not checked), one line if some are smaller than the crop. Sizes read width x height."""
    faults = []
    if len({s[2] for s in shapes}) > 1:
        grey = [n for s, n in zip(shapes, names) if s[2] == 1][:3]
        colour = [n for s, n in zip(shapes, names) if s[2] != 1][:3]
        faults.append(f"images mix grey ({', '.join(grey)}) and colour ({', '.join(colour)}) "
                      "files: save them all one way")
    sizes = Counter((s[1], s[0]) for s in shapes)
    if crop == 0 and len(sizes) > 1:
        hint = min(256, min(min(w, h) for w, h in sizes))
        found = ", ".join(f"{w}x{h} ({n} images)" for (w, h), n in sorted(sizes.items())[:6])
        more = ", ..." if len(sizes) > 6 else ""
        faults.append(f"images come in {len(sizes)} sizes ({found}{more}): set crop (e.g. "
                      f"crop: {hint} in YAML, --crop {hint}) to train on random crops of one size")
    if crop and (small := smaller_than(crop, f"crop {crop}", shapes, names)):
        faults.append(f"{small}: lower crop or raise scale (small images are refused, not "
                      "padded)")
    return faults


def smaller_than(side: int, what: str, shapes: list[tuple], names: list[str]) -> str | None:
    """'N image(s) smaller than WHAT after scaling (NAME WxH, ...)' for the images with a side
    below ``side``; None when there are none."""
    small = [f"{n} {s[1]}x{s[0]}" for s, n in zip(shapes, names) if min(s[:2]) < side]
    if not small:
        return None
    return (f"{len(small)} image(s) smaller than {what} after scaling "
            f"({', '.join(small[:4])}{', ...' if len(small) > 4 else ''})")


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


def probe_pair(image_path: Path, mask_path: Path | None, scale: float):
    """(shape after scaling, mask ndim, mask values) from the image's header and the decoded
    mask, or a list of fault lines. The image's pixels are not decoded here."""
    faults: list[str] = []
    header = read_image(image_path, faults, header_only=True)
    mask = read_image(mask_path, faults) if mask_path else None
    if header is None or mask is None:
        return faults  # no mask: pair_files has reported it
    size, mode = header
    if size != mask.size:
        return [f"{image_path}: image is {size[0]}x{size[1]} but its mask {mask_path.name} is "
                f"{mask.size[0]}x{mask.size[1]}"]
    new_size = scaled_size(size, scale)
    if min(new_size) < 1:
        return [f"{image_path}: scale {scale} leaves no pixels"]
    if new_size != size:
        mask = mask.resize(new_size, Image.NEAREST)
    mask = np.asarray(mask)
    values = np.unique(mask) if mask.ndim == 2 else np.unique(mask.reshape(-1, mask.shape[-1]),
                                                              axis=0)
    return (new_size[1], new_size[0], 1 if mode == "L" else 3), mask.ndim, values


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return int(scale * size[0]), int(scale * size[1])


def decode_pair(image_path: Path, mask_path: Path, scale: float, mask_values: list):
    """(HWC uint8 image, HW uint8 class indices, sha256 of both files' bytes)."""
    image_bytes, mask_bytes = image_path.read_bytes(), mask_path.read_bytes()
    digest = hashlib.sha256(image_bytes)
    digest.update(hashlib.sha256(mask_bytes).digest())
    image, mask = (open_bytes(b, p) for b, p in ((image_bytes, image_path),
                                                   (mask_bytes, mask_path)))
    new_size = scaled_size(image.size, scale)
    if new_size != image.size:  # Pytorch-UNet's resampling: bicubic images, nearest masks
        image = image.resize(new_size, Image.BICUBIC)
        mask = mask.resize(new_size, Image.NEAREST)
    image = image.convert("RGB") if image.mode not in ("L", "RGB") else image
    pixels = np.asarray(image, np.uint8)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    return pixels, class_indices(np.asarray(mask), mask_values, mask_path), digest.hexdigest()


def open_bytes(data: bytes, path: Path) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except UNREADABLE as error:
        raise DataFolderError(path.parent.parent, [unreadable(path, error)]) from None


def read_image(path: Path, faults: list[str], header_only: bool = False):
    try:
        with Image.open(path) as image:
            if header_only:
                return image.size, image.mode
            image.load()
            return image.copy()  # closing the file frees the original's pixels
    except UNREADABLE as error:
        faults.append(unreadable(path, error))
        return None


def unreadable(path: Path, error: Exception) -> str:
    first = (str(error).splitlines() or [""])[0][:100]
    return f"{path}: unreadable image ({type(error).__name__}: {first})"


def sorted_unique_values(per_mask: list[np.ndarray]) -> list:
    """Pytorch-UNet's mask_values: the sorted distinct grey levels (or RGB colours)."""
    if not per_mask:
        return []
    if per_mask[0].ndim == 1:
        return sorted(int(v) for v in np.unique(np.concatenate(per_mask)))
    colours = np.unique(np.concatenate(per_mask), axis=0)
    return [list(map(int, c)) for c in colours]


def class_indices(mask: np.ndarray, mask_values: list, path: Path) -> np.ndarray:
    """Each pixel's class: the rank of its value among ``mask_values``. A value the folder check
    did not find (the file changed since) is a fault naming the file: silently it would become
    a wrong class, or one past the last, which training meets as an index error."""
    values = np.asarray(mask_values)
    if mask.ndim == 2:  # sorted values, each present: the class is the value's rank
        out = np.searchsorted(values, mask)
        known = values[np.minimum(out, len(values) - 1)] == mask
    else:
        out, known = np.zeros(mask.shape[:2], np.intp), np.zeros(mask.shape[:2], bool)
        for index, value in enumerate(mask_values):
            match = (mask == np.asarray(value)).all(-1)
            out[match] = index
            known |= match
    if not known.all():
        unknown = mask[~known][0].tolist()
        raise DataFolderError(path.parent.parent, [
            f"{path}: holds the value {unknown}, not among the mask values {mask_values[:8]} "
            f"found when the folder was checked (did it change during decoding?): run again"])
    return out.astype(np.uint8)
