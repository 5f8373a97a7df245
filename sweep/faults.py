"""Fault injection, a test seam: the sweep's failure paths (a trial out of memory, a trial that
crashes and is retried from its checkpoint, a trial's worker killed as the kernel's OOM killer
kills it, a trial checkpoint damaged on disk) run on CPU without real failures.

Not a user setting, so not part of the experiment file: the tests set ``CRACK_SWEEP_FAULTS``
to JSON (tests/README.md), e.g. ``{"oom_when": {"batch_size": 2}}``. It is read on the driver
when the trainable is built and handed to the trials with ``tune.with_parameters``: a Ray
worker's environment is the one Ray started with, so a variable set later (by a test sharing
one Ray session) would never reach a trial that read it itself.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.config import TrainConfig
from training.settings import ConfigError, build, require

ENV_VAR = "CRACK_SWEEP_FAULTS"


@dataclass
class Faults:
    """Trials whose config matches every item of ``oom_when`` run out of memory at epoch
    ``oom_epoch``; those matching ``error_when`` crash at epoch ``error_epoch`` unless resumed
    from a checkpoint (so a retry gets past it); those matching ``kill_when`` SIGKILL their own
    worker process at epoch ``kill_epoch``, as a container's memory limit does (no Python
    error; resumed or not, as a real memory kill would come again); those matching
    ``damage_when`` hand Tune a damaged checkpoint at epoch ``damage_epoch`` (unless resumed),
    one whose bytes no longer match their checksum, as a disk or a copy can leave it."""
    oom_when: dict = field(default_factory=dict)
    oom_epoch: int = 1
    error_when: dict = field(default_factory=dict)
    error_epoch: int = 2
    kill_when: dict = field(default_factory=dict)
    kill_epoch: int = 1
    damage_when: dict = field(default_factory=dict)  # the checkpoint of damage_epoch, damaged
    damage_epoch: int = 1


def faults_from_env(environ=os.environ) -> Faults | None:
    """The faults ``CRACK_SWEEP_FAULTS`` asks for, or None; bad content is a ConfigError."""
    text = environ.get(ENV_VAR, "").strip()
    if not text:
        return None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{ENV_VAR}: not valid JSON ({error.msg}, char {error.pos})") from None
    faults = build(Faults, values, ENV_VAR)
    require(faults.oom_epoch >= 1, ENV_VAR, "oom_epoch", faults.oom_epoch, "at least 1")
    require(faults.kill_epoch >= 1, ENV_VAR, "kill_epoch", faults.kill_epoch, "at least 1")
    require(faults.damage_epoch >= 1, ENV_VAR, "damage_epoch", faults.damage_epoch,
            "at least 1")
    require(faults.error_epoch >= 2, ENV_VAR, "error_epoch", faults.error_epoch,
            "2 or more (a retry resumes after an earlier epoch)")
    settings = {f.name for f in dataclasses.fields(TrainConfig)}
    for section in ("oom_when", "error_when", "kill_when", "damage_when"):
        for key in set(getattr(faults, section)) - settings:
            raise ConfigError(f"{ENV_VAR}: {section}.{key} names no training setting")
    return faults


def fault_injector(faults: Faults | None, params: dict, resumed: bool):
    """A function of the epoch that raises where ``faults`` says, for the trial of ``params``;
    it returns True where the epoch's checkpoint is to be damaged (``damage_file``)."""
    faults = faults or Faults()

    def matches(when: dict) -> bool:
        return bool(when) and all(params.get(k) == v for k, v in when.items())

    oom, crash = matches(faults.oom_when), matches(faults.error_when) and not resumed
    kill = matches(faults.kill_when)
    damage = matches(faults.damage_when) and not resumed

    def inject(epoch: int) -> bool:
        if kill and epoch == faults.kill_epoch:
            os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer sends
        if oom and epoch == faults.oom_epoch:
            # A real allocation failure, not a raised class: torch's CPU allocator refuses 4 EiB
            # at once (nothing is used) with the plain RuntimeError a real CPU OOM gives.
            torch.empty(1 << 62, dtype=torch.uint8)
        if crash and epoch == faults.error_epoch:
            raise RuntimeError(f"injected by {ENV_VAR} error_when={faults.error_when} at epoch "
                               f"{epoch}")
        return damage and epoch == faults.damage_epoch

    return inject


def damage_file(path) -> None:
    """Flip bytes in the middle of ``path``, a fresh file (never the hard-linked original): its
    size and zip layout stay, the CRC-32 of an entry no longer matches."""
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    os.unlink(path)
    with open(path, "wb") as file:
        file.write(data)


# The other test hook: how each trial is paced, by trial number (a JSON list), read on the
# driver like the faults and handed to every trial, to make trials report in an order a test
# chooses (tests/test_sweep_repro.py). An item is either seconds of sleep per epoch, or
# {"after": m}: before reporting epoch e, wait until trial m has reported epoch e or has ended
# (as the driver's trial_status.json says). The second gives a strict order without sleeping
# for seconds "to be sure"; a wait gives up after PACE_TIMEOUT_S so a sweep never hangs on it.
EPOCH_DELAYS_ENV = "CRACK_SWEEP_TEST_EPOCH_DELAYS"
PACE_TIMEOUT_S = 120.0


def injected_epoch_delays(environ=os.environ) -> tuple[float | dict, ...]:
    items = json.loads(environ.get(EPOCH_DELAYS_ENV) or "[]")
    return tuple(item if isinstance(item, dict) else float(item) for item in items)


def pace(item: float | dict, epoch: int, run_dir: Path | None) -> None:
    """Trial pacing before epoch ``epoch`` is reported (0 or absent outside tests)."""
    import time

    if not isinstance(item, dict):
        time.sleep(item)
        return
    if run_dir is None:
        return
    from sweep.rundir import read_statuses

    deadline = time.monotonic() + PACE_TIMEOUT_S
    while time.monotonic() < deadline:
        for entry in read_statuses(run_dir).values():
            if entry.get("number") == item["after"] and (
                    entry.get("status") != "running" or entry.get("epochs", 0) >= epoch):
                return
        time.sleep(0.05)
