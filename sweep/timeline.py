"""How busy a sweep kept its slots, from the per-trial clock in trial_status.json (written by
sweep/status.py): placement, first training step, epochs' compute, end.

- effective concurrency = sum of the trials' epoch compute / the sweep's wall time (from the
  first placement to the last end): 2.0 means two trials trained the whole time;
- overhead vs the ideal = wall / (sum of epoch compute / concurrency) (1.0 = no slot ever idle,
  no start-up, no gap; it is concurrency / effective concurrency);
- per trial: start-up (placement -> first training step: actor start or reset, data from the
  object store, model build) and the gap before it (how long its slot stood empty after the
  trial that held it ended).
"""
from __future__ import annotations

import statistics


def trial_timeline(statuses: dict, concurrency: int) -> dict:
    timed = sorted(((tid, e) for tid, e in statuses.items()
                    if "placed_at" in e and "ended_at" in e), key=lambda item: item[1]["placed_at"])
    if not timed:
        return {}
    began = timed[0][1]["placed_at"]
    wall = max(e["ended_at"] for _, e in timed) - began
    free_at = [began] * concurrency  # when each slot last became free
    rows = []
    for trial_id, entry in timed:
        slot = min(range(concurrency), key=lambda i: free_at[i])
        gap = max(0.0, entry["placed_at"] - free_at[slot])
        free_at[slot] = entry["ended_at"]
        rows.append({"trial_id": trial_id, "placed_s": entry["placed_at"] - began,
                     "startup_s": entry.get("startup_s"), "gap_s": gap,
                     "compute_s": entry.get("compute_s", 0.0),
                     "held_s": entry["ended_at"] - entry["placed_at"]})
    compute = sum(r["compute_s"] for r in rows)
    startups = [r["startup_s"] for r in rows if r["startup_s"] is not None]
    return {"concurrency": concurrency, "wall_s": wall, "compute_s": compute,
            "held_s": sum(r["held_s"] for r in rows),
            "effective_concurrency": compute / wall if wall > 0 else 0.0,
            "overhead_vs_ideal": wall * concurrency / compute if compute > 0 else None,
            "median_startup_s": statistics.median(startups) if startups else None,
            "median_gap_s": statistics.median(r["gap_s"] for r in rows),
            "rows": rows}
