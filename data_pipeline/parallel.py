"""One parallel map with a progress bar, for decoding a data set into the cache."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

SERIAL_BELOW = 32  # items: fewer decode faster than a pool starts


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def parallel_map(function: Callable, items: Iterable, desc: str, workers: int = 0) -> Iterator:
    """``function(item)`` for every item, results in order, a tqdm bar on a terminal.

    Threads, not processes: Pillow's decoders and resampling and numpy's copies release the GIL,
    so threads use every core without forking a process that may hold Ray's or torch's threads;
    results (whole images) also need no pickling. Ctrl-C cancels what has not started."""
    items = list(items)
    workers = workers or default_workers()
    with tqdm(total=len(items), desc=desc, unit="img", disable=None, leave=False) as bar:
        if workers == 1 or len(items) < SERIAL_BELOW:
            for item in items:
                yield function(item)
                bar.update()
            return
        pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        try:
            for result in pool.map(function, items):
                yield result
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
