"""Read an offline W&B run back, record by record, with ``wandb leet inspect --json`` (what the
tests and the benchmarks use to check what the mirror wrote)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunRecords:
    records: list[dict]

    def of_type(self, kind: str) -> list[dict]:
        return [r[kind] for r in self.records if r["type"] == kind]

    @property
    def run(self) -> dict:
        """The latest run record (tags set after start come in a later one)."""
        return self.of_type("run")[-1]

    @property
    def config(self) -> dict:
        return {k: v for k, v in self.run["config"]["update"].items() if k != "_wandb"}

    @property
    def history(self) -> list[dict]:
        return [h["item"] for h in self.of_type("history")]

    @property
    def summary(self) -> dict:
        merged: dict = {}
        for update in self.of_type("summary"):
            merged.update(update.get("update", {}))
        return merged

    @property
    def exit_code(self) -> int | None:
        exits = self.of_type("exit")
        return exits[-1].get("exit_code", 0) if exits else None

    @property
    def artifacts(self) -> list[dict]:
        return self.of_type("artifact")


def read_run(path: str | Path) -> RunRecords:
    """Every record of the run in ``path`` (a run directory or its .wandb file)."""
    wandb_cli = str(Path(sys.executable).with_name("wandb"))
    done = subprocess.run([wandb_cli, "leet", "inspect", "--json", str(path)],
                          capture_output=True, text=True, check=True)
    return RunRecords([json.loads(line) for line in done.stdout.splitlines() if line.strip()])
