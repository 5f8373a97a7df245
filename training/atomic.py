"""Write aside, then rename: the one way this project saves a file that someone may read while
it is written (a report, a resumed driver, Ray) or that a kill may interrupt."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


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
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda temporary: temporary.write_text(text))


def write_json(path: str | Path, payload) -> Path:
    return write_text(path, json.dumps(payload, indent=1, sort_keys=True))
