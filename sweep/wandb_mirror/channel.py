"""Driver side of the mirror: a queue whose ``send`` never blocks, a feeder thread, and the one
writer process it feeds. Whatever happens to W&B, the sweep is told once and goes on."""
from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from sweep.rundir import ARTIFACT_STAGING_DIR

log = logging.getLogger(__name__)
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class MirrorChannel:
    def __init__(self, plan: dict, env: dict | None = None):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.broken = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sweep.wandb_mirror.writer"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, env=writer_env(plan, env), text=True,
            # Its own session: a Ctrl-C for the sweep does not cut the runs short.
            start_new_session=True)
        self.thread = threading.Thread(target=self._feed, name="wandb-mirror-feeder",
                                       daemon=True)
        self.thread.start()
        self.send({"kind": "plan", "plan": plan})

    def send(self, record: dict) -> None:
        if not self.broken:
            self.queue.put(record)

    def _feed(self) -> None:
        while (record := self.queue.get()) is not None:
            if self.broken:
                continue
            try:
                self.process.stdin.write(json.dumps(record) + "\n")
                self.process.stdin.flush()
            except (OSError, ValueError):  # the writer died: say so once, drop the rest
                self.broken = True
                log.warning("W&B mirror: the writer process exited (code %s); the sweep goes "
                            "on without it", self.process.poll())
        try:
            self.process.stdin.close()
        except OSError:
            pass

    def close(self, timeout: float) -> bool:
        """Flush what is queued and wait (at most ``timeout`` s) for the writer to finish."""
        deadline = time.monotonic() + timeout
        self.queue.put(None)
        self.thread.join(timeout)
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
            return True
        except subprocess.TimeoutExpired:
            log.warning("W&B mirror: still writing after %.0f s; it finishes in the background "
                        "(pid %d)", timeout, self.process.pid)
            return False


def writer_env(plan: dict, env: dict | None) -> dict:
    """The writer's environment: quiet W&B, offline said twice (wandb wants it in the env)."""
    env = dict(os.environ if env is None else env)
    env["WANDB_SILENT"] = "true"
    # A sweep id is set by the writer alone (online runs); one inherited from a shell or a
    # `wandb agent` would tie offline runs to a sweep W&B's server does not hold.
    env.pop("WANDB_SWEEP_ID", None)
    if plan["mode"] == "offline":
        env["WANDB_MODE"] = "offline"
    # Artifact staging inside the run directory, so `wandb-sync` finds everything there.
    env.setdefault("WANDB_DATA_DIR", str(Path(plan["run_dir"]) / ARTIFACT_STAGING_DIR))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env
