"""Run one side of a benchmark in a fresh Python process and get its JSON result back.

A fresh process per run keeps the sides apart: torch's global switches (deterministic
algorithms, thread counts), allocator caches and a CUDA context never leak from one side into
the other, and several children can share a GPU at once. Usage of the module itself:
``python -m bench.child SPEC.json`` where the spec names ``module:function`` and its
keyword arguments; the function's return value (a dict) is written to the spec's result path.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A benchmark could not produce its figure; the message says which side and why."""


class Child:
    """A started child process; ``result()`` waits for it and returns its dict."""

    def __init__(self, target: str, kwargs: dict, work_dir: Path, tag: str, env: dict | None):
        work_dir.mkdir(parents=True, exist_ok=True)
        self.target, self.tag = target, tag
        self.spec_path = work_dir / f"{tag}.spec.json"
        self.result_path = work_dir / f"{tag}.result.json"
        self.log_path = work_dir / f"{tag}.log"
        self.result_path.unlink(missing_ok=True)
        self.spec_path.write_text(json.dumps(
            {"target": target, "kwargs": kwargs, "result": str(self.result_path)}))
        child_env = {**os.environ, **(env or {})}
        # The repository on the path: the GPU machine runs from a plain checkout, not an install.
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p)
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.child", str(self.spec_path)],
                stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=REPO_ROOT)

    def result(self, timeout: float) -> dict:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise BenchError(f"{self.tag} ({self.target}) ran past {timeout:.0f} s; "
                             f"log: {self.log_path}") from None
        if code != 0 or not self.result_path.exists():
            raise BenchError(f"{self.tag} ({self.target}) failed with exit code {code}: "
                             f"{last_line(self.log_path)} (log: {self.log_path})")
        return json.loads(self.result_path.read_text())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_child(target: str, kwargs: dict, work_dir: Path, tag: str,
                env: dict | None = None) -> Child:
    return Child(target, kwargs, Path(work_dir), tag, env)


def run_in_child(target: str, kwargs: dict, work_dir: Path, tag: str, timeout: float,
                 env: dict | None = None) -> dict:
    return start_child(target, kwargs, work_dir, tag, env).result(timeout)


def last_line(path: Path) -> str:
    """The error a child printed last (its traceback's final line), trimmed."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def wait_for_go(barrier_dir: str | None, tag: str, timeout: float = 600) -> float:
    """Say 'ready' and wait until the parent says 'go' (so concurrent children start their
    timed work together); returns the time it went. Without a barrier, goes at once."""
    if not barrier_dir:
        return time.time()
    barrier = Path(barrier_dir)
    (barrier / f"{tag}.ready").touch()
    deadline = time.time() + timeout
    while not (barrier / "go").exists():
        if time.time() > deadline:
            raise BenchError(f"{tag}: no 'go' within {timeout:.0f} s")
        time.sleep(0.01)
    return time.time()


def release_when_ready(barrier_dir: Path, tags: list[str], children: list[Child],
                       timeout: float) -> float:
    """Parent side of the barrier: wait for every child's 'ready', then say 'go'."""
    deadline = time.time() + timeout
    while not all((barrier_dir / f"{tag}.ready").exists() for tag in tags):
        for child in children:
            if child.process.poll() is not None:  # one died while getting ready
                child.result(timeout=1)
        if time.time() > deadline:
            raise BenchError(f"children not ready within {timeout:.0f} s")
        time.sleep(0.01)
    go = time.time()
    (barrier_dir / "go").touch()
    return go


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    module_name, _, function_name = spec["target"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**spec["kwargs"])
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
