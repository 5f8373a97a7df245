"""Write aside, then rename: the one way this project saves a file that someone may read while
it is written (a report, a resumed driver, Ray) or that a kill may interrupt."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from training.errors import is_disk_full_text
from training.settings import ConfigError

# Below this, a failed write is taken for a full disk even when the error does not say so
# (torch.save reports ENOSPC as a RuntimeError "file write failed", without its errno).
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(ConfigError):
    """No space left where a file had to be written; the message is one line: what, where,
    how much is free."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` beside ``path``, then rename it over ``path``. Readers see the
    old file or the new one, never half of one; a failed write (full disk, Ctrl-C) removes its
    temporary file and leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and per process: globs such as checkpoint_epoch*.pth never match it, and two
    # processes writing one path never share a temporary file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        full = failed_for_space(error, path)  # judged before the temporary frees its space
        temporary.unlink(missing_ok=True)
        if full:
            raise disk_full(path) from None
        raise
    return path


@contextlib.contextmanager
def disk_full_guard(path: str | Path) -> Iterator[None]:
    """Turn a write that failed for want of space into one DiskFullError naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if failed_for_space(error, path):
            raise disk_full(path) from None
        raise


def failed_for_space(error: BaseException, path: str | Path) -> bool:
    if isinstance(error, DiskFullError) or not isinstance(error, (OSError, RuntimeError)):
        return False
    return is_disk_full(error) or (not isinstance(error, FileNotFoundError)
                                   and free_bytes(path) < NEARLY_FULL_BYTES)


def is_disk_full(error: BaseException | None) -> bool:
    """ENOSPC or EDQUOT anywhere in the error's chain, or its text saying so."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if is_disk_full_text(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system holding ``path`` (its nearest existing parent)."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return 0


def nearest_existing(path: str | Path) -> Path:
    """``path`` made absolute if it exists, else its nearest existing parent."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(path: str | Path, what: str, hint: str = "") -> None:
    """Refuse in one line a folder a command would write into but cannot: a file where it or a
    parent should be, a read-only mount, no permission. Said before any work starts, rather than
    a traceback from its first write. A missing folder is judged where it would be created;
    writing a file there is the one test that sees read-only mounts and root's rights alike."""
    path = Path(path).expanduser().absolute()
    existing = nearest_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: cannot write there: {existing} is not a directory"
                          f"{hint}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        if is_disk_full(error):
            raise disk_full(existing) from None
        raise ConfigError(f"{what} {path}: cannot write there: {existing} is not writable "
                          f"({error.strerror}){hint}") from None


def disk_full(path: str | Path) -> DiskFullError:
    path = Path(path)
    where = path if path.is_dir() else path.parent
    try:
        usage = shutil.disk_usage(where)
        room = f"{mb(usage.free)} free of {mb(usage.total)}"
    except OSError:
        room = "free space unknown"
    return DiskFullError(f"disk full: cannot write {path} ({room} on {where}); free some "
                         f"space there, then run the same command again")


def mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def write_json(path: str | Path, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=1, sort_keys=True))
