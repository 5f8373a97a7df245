"""One sweep process per run directory: ``run``, ``resume`` and ``confirm`` hold an exclusive
``flock`` on ``<run dir>/sweep.lock`` while they work.

Why flock: the kernel releases it when its holder dies, however it dies (even ``kill -9``), so a
stale lock cannot block anyone; the pid, command and start time written into the file only say
who holds a live one. The descriptor is not inherited by the processes the driver starts (Python
opens files non-inheritable), so a leftover child never keeps a dead driver's lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sweep.rundir import LOCK_FILE, clear_stale_study_lock
from training.settings import ConfigError


class RunDirBusy(ConfigError):
    """Another live process holds the run directory; the message is one line."""


@contextlib.contextmanager
def hold(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run directory's lock for the block, or raise RunDirBusy at once."""
    run_dir = Path(run_dir)
    created = first_missing(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(f"{run_dir} is in use by {holder(path)}; wait for it to end (or "
                             f"stop it), then try again") from None
        os.ftruncate(fd, 0)
        os.write(fd, describe_self().encode())
        clear_stale_study_lock(run_dir)  # a killed driver's; ours now to clear
        yield path
    finally:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            remove_empty(path, run_dir, created)  # rejected before anything was written
        os.close(fd)  # releases the lock; the file stays (removing it would race a new holder)


def first_missing(folder: Path) -> Path | None:
    """The topmost folder of ``folder``'s path that does not exist yet."""
    missing = None
    while not folder.exists() and folder != folder.parent:
        missing, folder = folder, folder.parent
    return missing


def remove_empty(lock: Path, run_dir: Path, created: Path) -> None:
    lock.unlink(missing_ok=True)
    folder = run_dir
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == created:
            return
        folder = folder.parent


def describe_self() -> str:
    command = " ".join([Path(sys.executable).name, *sys.argv])[:200]
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    return f"pid {os.getpid()} ({command}) since {since}\n"


def holder(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "another process (it has not said which yet)"
