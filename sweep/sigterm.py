"""SIGTERM (what systemd, Kubernetes, Slurm and `timeout` send) stops a sweep command the way
Ctrl-C does: Tune saves the sweep's state and stops, the summary names `python -m sweep resume`,
and the command exits 143 (128 + SIGTERM, what a shell shows for a SIGTERMed process).

ray.init replaces Python's SIGTERM handler with one that exits at once, and Ray's C++ core adds
its own that dumps a stack and aborts (exit 134); so ``catch`` is called again once Ray runs.
"""
from __future__ import annotations

import os
import signal
import threading

EXIT_CODE = 128 + signal.SIGTERM
_received = False


def catch() -> None:
    """SIGTERM from now on acts as SIGINT would. Signal handlers belong to the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop_like_ctrl_c)


def _default_in_forked_child() -> None:
    """A forked child (a multiprocessing pool's or a DataLoader's worker) is not the sweep
    command: SIGTERM ends it, as it would without us. Inheriting the handler, it borrowed the
    SIGINT handler it was forked with, and Tune's (which a finished Tuner leaves installed)
    swallows a first signal: Pool.terminate() then waited forever on a worker it had stopped
    (seen in the test suite: a crack folder written by a fork pool after a sweep)."""
    if signal.getsignal(signal.SIGTERM) is stop_like_ctrl_c:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_in_forked_child)


def stop_like_ctrl_c(signum: int, frame) -> None:
    """What SIGINT would do now: while a Tuner runs, Tune's handler (stop after saving the
    sweep's state); otherwise KeyboardInterrupt."""
    global _received
    _received = True
    interrupt = signal.getsignal(signal.SIGINT)
    if not callable(interrupt):  # SIG_IGN (a background job) or SIG_DFL: none to borrow
        raise KeyboardInterrupt
    interrupt(signal.SIGINT, frame)


def received() -> bool:
    return _received


def exit_code(otherwise: int) -> int:
    """143 once SIGTERM stopped the command, else ``otherwise``."""
    return EXIT_CODE if _received else otherwise
