"""What went wrong, decided in one place: which errors are the trial storage's (and which of those
are worth waiting for), riding a storage outage out, a failed trial's error and its one-line
reason, and how running out of memory reads.

The two pieces training/ needs as well, an error as one line and the text of a full disk, live in
training/errors.py (training/ never imports sweep/); this module builds on them. What a full disk
or an unreachable storage does to a sweep (stop it, resumable) is sweep/diskspace.py's and
sweep/outage.py's.
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from training.errors import error_line

log = logging.getLogger(__name__)


# ---- an error inside another --------------------------------------------------------------
def raised_within(error: BaseException | None, kind: type) -> BaseException | None:
    """The first ``kind`` in an error's chain: Tune wraps what a callback raises (TuneError),
    and the callback's own line is the one to show."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


# ---- storage errors: which are the storage's, and which of those waiting fixes --------------
# Worth waiting for: how pyarrow (AWS SDK / curl) and Python say "could not reach it".
TRANSIENT_STORAGE_TEXT = ("network_connection", "curlcode", "could not connect",
                          "couldn't connect", "failed to connect", "connection refused",
                          "connection reset", "connection aborted", "timed out", "timeout",
                          "service unavailable", "slow down", "slowdown", "throttl",
                          "internal_failure", "broken pipe")
# The storage's too, whatever the error's type (Tune wraps what it raises), but not worth
# waiting for: "no such bucket" or "access denied" come as AWS errors, and words this loose
# ("connection" of anything) are no sign that the storage will be back.
STORAGE_TEXT = ("aws error", "s3", "curl", "connection", "network", "unreachable", "timed out")


def is_transient_storage_error(error: BaseException) -> bool:
    """The storage could not be reached (for now): what ``ride_out`` retries. A missing key
    is an answer, not an outage."""
    if isinstance(error, FileNotFoundError):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return isinstance(error, OSError) and mentions(error, TRANSIENT_STORAGE_TEXT)


def is_storage_error(error: BaseException) -> bool:
    """Any error of the trial storage, transient or not (a URI storage that failed a sweep
    gets a one-line "unreachable" instead of a traceback)."""
    return is_transient_storage_error(error) or mentions(error, STORAGE_TEXT)


def mentions(error: BaseException, words: tuple[str, ...]) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return any(word in text for word in words)


def is_storage_outage_text(error_text: str) -> bool:
    """Whether a trial's error (Ray's error.txt: a traceback, the exception last) is its
    storage being unreachable: the transient kind, read from text. Only the last lines are
    read: a traceback's source lines may say "timeout" about anything."""
    tail = " ".join(error_text.strip().splitlines()[-3:]).lower()
    return ("oserror" in tail or "connectionerror" in tail) and any(
        word in tail for word in TRANSIENT_STORAGE_TEXT)


# ---- riding out a storage outage ---------------------------------------------------------------
# A URI storage (S3, GCS) can be unreachable for a while. pyarrow's own retries (the AWS SDK's
# standard strategy: 3 tries) give up after ~6 s, so the storage calls of the driver's callbacks
# and of a trial's per-epoch checkpoint upload retry for up to this long. It matters most in the
# driver's Tune callbacks: an exception raised there when a trial ends
# (TrialStatusLog.on_trial_complete) reaches Tune's stop_trial, which files it as a trial
# failure and, with max_failures, restarts the finished trial from its last checkpoint: a trial
# pruned after 2 epochs trained epochs 3-4 (issue 12).
STORAGE_RIDE_OUT_S = 60.0
# ... which a user (or a test) changes through the environment of the driver (and so of the
# trials of a Ray it starts; on a cluster, of every node's `ray start`).
RIDE_OUT_ENV = "CRACK_SWEEP_STORAGE_RIDE_OUT_S"


def ride_out_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(RIDE_OUT_ENV) or STORAGE_RIDE_OUT_S))
    except ValueError:
        return STORAGE_RIDE_OUT_S


def ride_out(call, what: str, seconds: float | None = None):
    """``call()``, retried while the storage is unreachable, for up to ``seconds``
    (STORAGE_RIDE_OUT_S); any other error, or the last one, is raised."""
    deadline = time.monotonic() + (ride_out_seconds() if seconds is None else seconds)
    delay, warned = 0.25, False
    while True:
        try:
            result = call()
        except Exception as error:  # noqa: BLE001 - only a transient storage error is retried
            if not is_transient_storage_error(error) or time.monotonic() + delay > deadline:
                raise
            if not warned:
                log.warning("%s: trial storage unreachable, retrying for up to %.0f s (%s)",
                            what, deadline - time.monotonic(), error_line(error))
                warned = True
            time.sleep(delay)
            delay = min(2 * delay, 4.0)
        else:
            if warned:
                log.warning("%s: trial storage reachable again", what)
            return result


# ---- a failed trial's error: Ray's error.txt ---------------------------------------------------
NO_ERROR_TEXT = "error (see the trial's error.txt)"


def trial_error_text(trial) -> str:
    """A Tune trial's error (Ray's error.txt: a traceback, the exception last); '' when there is
    none to read. The driver's local error.txt first: when on_trial_error runs, get_error()
    (which reads the storage copy) can still come back empty."""
    try:
        text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
        return text or str(trial.get_error() or "")
    except Exception:  # noqa: BLE001 - the error is for a reason or a check; never fail the sweep
        return ""


def error_reason(error_text: str) -> str:
    """A failed trial's reason (trial_status.json, the study, W&B): the last line of its error
    text, e.g. 'error: ValueError: ...'."""
    lines = [line.strip() for line in error_text.splitlines() if line.strip()]
    return f"error: {lines[-1][:300]}" if lines else NO_ERROR_TEXT


# ---- out of memory -------------------------------------------------------------------------------
# How running out of memory reads, wherever it happened: torch on CUDA ("CUDA out of memory",
# torch.OutOfMemoryError) and on CPU (a plain RuntimeError: "DefaultCPUAllocator: can't
# allocate memory" or "... not enough memory"), cuBLAS/cuDNN's workspaces, Python and numpy
# (MemoryError, "Unable to allocate"), Ray's memory monitor killing a worker.
OUT_OF_MEMORY_TEXT = ("out of memory", "outofmemoryerror", "can't allocate memory",
                      "cannot allocate memory", "not enough memory", "memoryerror",
                      "unable to allocate", "status_alloc_failed", "running low on memory")


def is_out_of_memory(text: str) -> bool:
    text = text.lower()
    return any(pattern in text for pattern in OUT_OF_MEMORY_TEXT)


# ---- a worker killed for memory: no Python error, only Ray's word for how it died -------------
# Ray 2.60's texts (its raylet and core worker), the error's last lines in the trial's error.txt:
# - its memory monitor killed the worker: exit type NODE_OUT_OF_MEMORY, "... killed due to the
#   node running low on memory. Memory on the node (IP: ..., ID: ...) was 7.50GB used / 7.70GB
#   limit (0.974)" (a task: ray.exceptions.OutOfMemoryError; an actor, as a trial is:
#   ActorDiedError);
# - the worker process vanished without a word (SIGKILL: a container's memory limit is enforced
#   by the kernel's OOM killer): exit type SYSTEM_ERROR, "Worker unexpectedly exits with a
#   connection error code 2. End of file. Some common causes include: (1) the process was
#   killed by the OOM killer ...". Ray cannot tell a SIGKILL from a segfault or os._exit there
#   (measured: signals 9, 11, 6 and os._exit(1) give the same text), and neither can we; a
#   native crash of the same config would come back on a retry as surely.
MEMORY_MONITOR_TEXT = ("node_out_of_memory", "running low on memory", "outofmemoryerror")
VANISHED_WORKER_TEXT = "worker unexpectedly exits with a connection error code"
NODE_MEMORY = re.compile(r"was ([\d.]+\s*GB) used / ([\d.]+\s*GB) limit")
# Ray's error file holds every failure of a trial ("Failure # 2 (occurred at ...)"); the last
# one is the one being handled.
FAILURE_HEADER = re.compile(r"^Failure # \d+ \(occurred at [^)]*\)$", re.MULTILINE)


def memory_kill_reason(error_text: str) -> str | None:
    """One line (starting "out of memory", as any infeasible trial's reason does) when the
    trial's last failure is its worker killed for memory; None for any other error."""
    last = FAILURE_HEADER.split(error_text)[-1]
    text = last.lower()
    if any(word in text for word in MEMORY_MONITOR_TEXT):
        usage = NODE_MEMORY.search(last)
        where = f" ({usage.group(1)} used of {usage.group(2)})" if usage else ""
        return f"out of memory: Ray's memory monitor killed its worker{where}"
    if VANISHED_WORKER_TEXT in text:
        return ("out of memory: its worker process was killed without a Python error (SIGKILL, "
                "as the kernel's OOM killer does at a container's memory limit)")
    return None


def failure_reason(error_text: str) -> str:
    """A failed trial's reason: what killed its worker when memory did (infeasible, see
    outcome.verdict), else its error's last line."""
    return memory_kill_reason(error_text) or error_reason(error_text)


# Ray logs every failed trial task with its traceback here (~25 lines for a killed worker:
# the actor's death, its pid, Ray's advice), before any callback runs.
RAY_TRIAL_LOGGER = "ray.tune.execution.tune_controller"


class OneLineMemoryKills(logging.Filter):
    """Ray's record of a trial task that failed because its worker was killed for memory,
    said as one line of ours instead (the trial is infeasible and not retried:
    TrialOutcomes.retry)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        reason = memory_kill_reason(str(error)) if error is not None else None
        if reason is None:
            return True
        trial = record.getMessage().rsplit(" ", 1)[-1]  # "Trial task failed for trial NAME"
        log.warning("trial %s: %s; infeasible, not retried", trial, reason)
        return False


def quiet_memory_kill_tracebacks() -> None:
    logger = logging.getLogger(RAY_TRIAL_LOGGER)
    if not any(isinstance(f, OneLineMemoryKills) for f in logger.filters):
        logger.addFilter(OneLineMemoryKills())
