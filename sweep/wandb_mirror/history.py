"""How a sweep grew, for its W&B summary run: where `extend` added trials (extensions.json) and
which earlier sweeps warm-started it (warm_start.json). Read from the run directory when the
summary run is written, so an extension's resumed mirror reports the whole history."""
from __future__ import annotations

import json
from pathlib import Path

from sweep import rundir


def sweep_history(run_dir: str | Path) -> dict:
    """{"extended_at": [K, ...], "warm_start": {...}} with what applies ({} for a sweep run
    once, from scratch). ``extended_at``: the trial numbers each extension started from."""
    history = {}
    extensions = read_list(Path(run_dir) / rundir.EXTENSIONS_FILE)
    if extensions:
        history["extended_at"] = [entry.get("from_trials") for entry in extensions]
        history["space_changed_at"] = [entry.get("from_trials") for entry in extensions
                                       if entry.get("space")]
    warm = read_dict(Path(run_dir) / rundir.WARM_START_FILE)
    if warm:
        history["warm_start"] = {
            "told": warm.get("told", 0),
            "sources": [{"path": s.get("path"), "experiment": s.get("experiment"),
                         "told": s.get("told", 0), "not_told": sum((s.get("not_told") or {})
                                                                   .values())}
                        for s in warm.get("sources", [])]}
    return history


def read_list(path: Path) -> list:
    value = read_json(path)
    return value if isinstance(value, list) else []


def read_dict(path: Path) -> dict:
    value = read_json(path)
    return value if isinstance(value, dict) else {}


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
