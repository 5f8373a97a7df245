"""Memory of a process tree, sampled: the sum of PSS (proportional set size) over a process and
all its descendants. PSS splits each shared page among the processes mapping it, so a data set
that trials share through Ray's object store is counted once, and one copied into every trial
is counted once per copy: exactly the difference the `memory` benchmark looks for."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench.child import BenchError

PROC = Path("/proc")


def check_supported() -> None:
    if not (PROC / str(os.getpid()) / "smaps_rollup").exists():
        raise BenchError("memory needs Linux's /proc/<pid>/smaps_rollup (PSS) on this machine")


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (one pass over /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and ')': the fields after the last ')' are safe.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def pss_mb(pid: int, field: str = "Pss") -> float:
    """PSS in MB; field "Pss_Anon" keeps only anonymous memory (heaps, tensors): not the
    memory-mapped cache's file pages (page cache the kernel can drop and reread) nor Ray's
    object store (shared memory)."""
    return pss_fields(pid).get(field, 0.0)


def pss_fields(pid: int) -> dict[str, float]:
    """{"Pss": MB, "Pss_Anon": MB, "Pss_File": MB, ...} of one process ({} once it ended)."""
    try:
        lines = (PROC / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return {}  # ended, or not ours to read
    return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in lines
            if line.startswith("Pss")}


def tree_pss_mb(root: int, field: str = "Pss") -> float:
    return sum(pss_mb(pid, field) for pid in descendants(root))


class PeakSampler:
    """Samples a process tree's PSS in a thread until stopped; keeps the peak."""

    def __init__(self, root: int, interval_s: float = 0.1):
        self.root, self.interval_s = root, interval_s
        self.peak_mb, self.peak_anon_mb, self.samples = 0.0, 0.0, 0
        # Anonymous MB per process kind (Ray's process titles, e.g. "ray::_Inner.train") at the
        # anonymous peak: says which processes a peak is made of.
        self.peak_anon_by_kind: dict[str, float] = {}
        self.elapsed_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        check_supported()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.perf_counter()
        while not self._stop.is_set():
            tree = descendants(self.root)
            fields = [pss_fields(pid) for pid in tree]
            self.peak_mb = max(self.peak_mb, sum(f.get("Pss", 0.0) for f in fields))
            anon = sum(f.get("Pss_Anon", 0.0) for f in fields)
            if anon > self.peak_anon_mb:
                self.peak_anon_mb = anon
                self.peak_anon_by_kind = by_kind(tree, [f.get("Pss_Anon", 0.0) for f in fields])
            self.samples += 1
            self.elapsed_s = time.perf_counter() - began
            self._stop.wait(self.interval_s)

    def mean_period_s(self) -> float:
        """Seconds between samples as measured (a sample of a big tree is not free): a peak
        shorter than this can be missed."""
        return self.elapsed_s / max(self.samples - 1, 1)


def process_kind(pid: int) -> str:
    """A process's title, shortened to its kind: Ray renames its workers ("ray::_Inner.train",
    "ray::IDLE"); others keep their program's name."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].split()[0]
    words = [Path(word).name for word in " ".join(argv).split()]
    if words and words[0].startswith("python") and "-c" not in words:
        # the script or module (-m) says more than "python"
        words = [w for w in words[1:] if not w.startswith("-")][:1] or words[:1]
    return words[0] if words else "?"


def by_kind(pids: list[int], values: list[float]) -> dict[str, float]:
    kinds: dict[str, float] = {}
    for pid, value in zip(pids, values):
        if value:
            kind = process_kind(pid)
            kinds[kind] = kinds.get(kind, 0.0) + value
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


def wait_and_sample(process, interval_s: float = 0.1, timeout: float = 3600) -> float:
    """Peak PSS of a running subprocess.Popen's tree until it exits."""
    return sample_until_exit(process, interval_s, timeout).peak_mb


def sample_until_exit(process, interval_s: float = 0.1, timeout: float = 3600) -> PeakSampler:
    """The sampler (peak PSS, peak anonymous PSS) of a subprocess.Popen's tree until it exits."""
    deadline = time.time() + timeout
    with PeakSampler(process.pid, interval_s) as sampler:
        while process.poll() is None:
            if time.time() > deadline:
                process.kill()
                raise BenchError(f"pid {process.pid} ran past {timeout:.0f} s")
            time.sleep(interval_s)
    return sampler
