"""How an error reads, at the lowest level: as one line, and whether it says the disk is full.

Here rather than in sweep/failures.py (which builds on it) because training/ never imports
sweep/, and both need them."""
from __future__ import annotations

# How the OS says it (ENOSPC), in an OSError's text or a traceback that quotes one.
NO_SPACE = "No space left on device"
DISK_FULL_TEXT = (NO_SPACE, "[Errno 28]")


def error_line(error: BaseException, limit: int | None = 300, *, named: bool = True) -> str:
    """``error`` as one line: 'TypeName: message' (just the message when not ``named``), its
    newlines and runs of spaces made one space, cut to ``limit`` characters (None: whole)."""
    text = f"{type(error).__name__}: {error}" if named else str(error)
    return " ".join(text.split())[:limit]


def is_disk_full_text(text: str) -> bool:
    return any(words in text for words in DISK_FULL_TEXT)
