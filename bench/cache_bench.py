"""`cache`: training samples/s from the memory-mapped decoded cache vs the same pixels held in
RAM (the path every data set took before the cache), with the page cache warm and cold.

The data set is decoded once into the cache (the build rate and its size on disk are figures
too). Each side then trains the same UNet on it in a fresh process, sides alternating:
- ``in-memory``: the cache's arrays copied into the process's own memory first;
- ``cache warm``: the memory-mapped arrays, their pages already in the OS page cache;
- ``cache cold``: the memory-mapped arrays with the cache's pages dropped from the page cache
  (``posix_fadvise(DONTNEED)``, no root needed) before every epoch, as when a data set is larger
  than RAM and each epoch reads it from disk again.
Headline: cold cache vs in-memory, ratio of median samples/s over epochs 2..E (goal >= 0.95).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.child import run_in_child
from bench.data_folder import image_bytes, write_crack_folder
from bench.measure import interleave, median, ratio, spread
from bench.registry import Context, Outcome

GOAL = 0.95
SIDES = ("in-memory", "cache warm", "cache cold")


@dataclass
class CacheSize:
    images: int
    file_px: int  # PNGs on disk, decoded at scale 0.5
    width: int
    batch_size: int
    epochs: int
    repeats: int


FULL = CacheSize(images=240, file_px=512, width=8, batch_size=8, epochs=4, repeats=3)
TINY = CacheSize(images=8, file_px=64, width=4, batch_size=2, epochs=2, repeats=1)


def run(ctx: Context) -> Outcome:
    size = TINY if ctx.tiny else FULL
    folder = write_crack_folder(ctx.work_dir / "data", size.images, size.file_px)
    cache_dir = ctx.work_dir / "cache"
    build = run_in_child("bench.cache_bench:build_side", {
        "data_dir": str(folder), "cache_dir": str(cache_dir)}, ctx.work_dir, "build",
        timeout=120 if ctx.tiny else 1800)
    setup = {"data_dir": str(folder), "cache_dir": str(cache_dir), "width": size.width,
             "batch_size": size.batch_size, "epochs": size.epochs}

    def side(name: str):
        def run_once(repeat: int) -> dict:
            kwargs = {**setup, "mode": name, "out_dir": str(ctx.work_dir / f"{name}{repeat}")}
            return run_in_child("bench.cache_bench:train_side", kwargs, ctx.work_dir,
                                f"{name.replace(' ', '-')}{repeat}", 300 if ctx.tiny else 1800)
        return run_once

    runs = interleave({name: side(name) for name in SIDES}, ctx.repeats or size.repeats)
    return summarise(runs, build, size, image_bytes(folder))


def summarise(runs: dict, build: dict, size: CacheSize, folder_bytes: int) -> Outcome:
    speeds = {name: [r["samples_per_s"] for r in runs[name]] for name in SIDES}
    base = median(speeds["in-memory"])
    cold, warm = ratio(median(speeds["cache cold"]), base), ratio(median(speeds["cache warm"]),
                                                                   base)
    figures = {
        "samples_per_s": {name: spread(values) for name, values in speeds.items()},
        "first_epoch_s": {name: median([r["first_epoch_s"] for r in runs[name]])
                          for name in SIDES},
        "val_dice": {name: median([r["val_dice"] for r in runs[name]]) for name in SIDES},
        "warm_vs_memory": warm, "cold_vs_memory": cold, "build": build,
        "setup": {"images": size.images, "file_px": size.file_px, "scale": 0.5,
                  "width": size.width, "batch_size": size.batch_size, "epochs": size.epochs,
                  "folder_bytes": folder_bytes, "repeats": len(speeds["in-memory"])},
        "runs": runs,
    }
    headline = (f"cold cache {cold:.2f}x, warm cache {warm:.2f}x the in-memory samples/s "
                f"({median(speeds['cache cold']):.1f} / {median(speeds['cache warm']):.1f} vs "
                f"{base:.1f}); cache built at {build['images_per_s']:.1f} images/s, "
                f"{build['cache_mb']:.0f} MB on disk")
    notes = [f"UNet width {size.width}, {size.images} images of {size.file_px} px PNG read at "
             f"scale 0.5, batch {size.batch_size}, {size.epochs} epochs, num_workers 0, "
             f"augmentation on; samples/s over epochs 2..E, median of "
             f"{len(speeds['in-memory'])} alternating runs per side",
             "cold: the cache's pages are dropped from the page cache before every epoch "
             "(posix_fadvise DONTNEED), so each epoch reads the data from disk again",
             f"val_dice is the same on every side by construction (same pixels): "
             f"{', '.join(f'{v:.4f}' for v in figures['val_dice'].values())}"]
    if cold < GOAL:
        notes.append(f"goal missed by {GOAL / cold - 1:.0%}")
    return Outcome(ratio=cold, headline=headline, met=cold >= GOAL, figures=figures,
                   notes=notes)


# ---- the child processes ---------------------------------------------------------------------

def build_side(data_dir: str, cache_dir: str) -> dict:
    """Decode the folder into a fresh cache: images/s of the build and the cache's size."""
    from data_pipeline import load_data

    start = time.perf_counter()
    data = load_data(data_dir, scale=0.5, cache_dir=cache_dir)
    seconds = time.perf_counter() - start
    folder = Path(data.cache.path)
    cache_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {"images": len(data), "seconds": seconds, "images_per_s": len(data) / seconds,
            "cache_mb": cache_bytes / 2**20, "threads": os.cpu_count()}


def train_side(data_dir: str, cache_dir: str, mode: str, out_dir: str, width: int,
               batch_size: int, epochs: int) -> dict:
    import numpy as np

    from bench.sides import round_val, timing_record
    from data_pipeline import load_data
    from training.config import TrainConfig
    from training.loop import train

    data = load_data(data_dir, scale=0.5, cache_dir=cache_dir)
    files = [p for p in Path(data.cache.path).iterdir() if p.suffix == ".npy"]
    if mode == "in-memory":
        data.images, data.masks = np.array(data.images), np.array(data.masks)  # own copies
        data.cache = None
    elif mode == "cache warm":
        for path in files:  # read once: every page in the page cache before the clock
            path.read_bytes()
    config = TrainConfig(data_dir=data_dir, scale=0.5, cache_dir=cache_dir, width=width,
                         batch_size=batch_size, epochs=epochs, threads=1, device="cpu",
                         out_dir=out_dir)
    epoch_ends: list[float] = []

    def report(metrics, state) -> None:
        epoch_ends.append(time.perf_counter())
        if mode == "cache cold":
            drop_from_page_cache(files, [data.images, data.masks])  # the next epoch reads disk

    if mode == "cache cold":
        drop_from_page_cache(files, [data.images, data.masks])
    start = time.perf_counter()
    result = train(config, data, report=report)
    n_train = len(data) - round_val(len(data), config.val_percent)
    return timing_record(n_train, start, epoch_ends, time.time(), 0.0,
                         val_dice=result.history[-1]["val_dice"])


def drop_from_page_cache(files: list[Path], arrays: list) -> None:
    """Evict the cache files' pages. Pages this process has mapped are kept by the kernel, so
    its mappings of them are dropped first (madvise DONTNEED; the next touch maps them again)."""
    import mmap

    for array in arrays:
        for base in memory_maps(array):
            base.madvise(mmap.MADV_DONTNEED)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def memory_maps(array) -> list:
    """The mmap objects behind a (view of a) numpy memmap, or a tuple of such views."""
    found, seen = [], set()
    for item in (array if isinstance(array, tuple) else [array]):
        while item is not None:
            mapped = getattr(item, "_mmap", None)
            if mapped is not None and id(mapped) not in seen:
                seen.add(id(mapped))
                found.append(mapped)
            item = getattr(item, "base", None)
    return found
