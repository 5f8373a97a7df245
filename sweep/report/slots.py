"""The report's "Slots" section: the speed probe's table (which num_workers every trial got, and
why) and how busy the sweep kept its slots (effective concurrency, start-up, gaps per trial)."""
from __future__ import annotations

import json

import pandas as pd

from sweep import rundir
from sweep.report.document import Bullets, Section, Table, Text
from sweep.report.load import RunData
from sweep.timeline import trial_timeline


def slots(run: RunData, suffix: str) -> Section:
    section = Section(f"Slots: speed probe, start-up and gaps{suffix}")
    probe = read_probe(run)
    if probe:
        section.add(*probe_blocks(probe))
    concurrency = int((run.experiment.get("search") or {}).get("concurrency") or 1)
    timeline = trial_timeline(rundir.read_statuses(run.path), concurrency)
    if not timeline:
        return section.add(Text("No trial timeline in trial_status.json (a sweep written "
                                "before start-up and gaps were recorded).", "missing"))
    return section.add(*timeline_blocks(timeline))


def read_probe(run: RunData) -> dict | None:
    try:
        return json.loads((run.path / rundir.SPEED_PROBE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def probe_blocks(probe: dict) -> list:
    chosen = ", ".join(f"`{k}={v}`" for k, v in probe["chosen"].items())
    blocks = [Text(f"Every trial ran with {chosen} ({probe['reason']}); a loader worker "
                   f"reserved {probe['worker_cpus']:g} CPU. These settings change speed, never "
                   f"results, so they are fixed before the sweep and TPE never models them.",
                   "note")]
    if probe.get("rows"):
        frame = pd.DataFrame([{
            "num_workers": str(r["num_workers"]), "pin_memory": str(r["pin_memory"]),
            "samples/s": f"{r['samples_per_s']:.1f}",
            "worker CPU/s": f"{r['worker_cpu_per_s']:.2f}",
            "trial reserves (CPU)": f"{r['reserve_cpus']:g}",
            "fits the concurrency": "yes" if r["fits"] else "no"} for r in probe["rows"]])
        blocks.append(Table(frame, f"Speed probe: {probe['steps']} training steps per "
                                   f"candidate at batch size {probe['batch_size']}, "
                                   f"{probe['total_cpus']:g} CPUs, concurrency "
                                   f"{probe['concurrency']}"))
    return blocks


def seconds(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def timeline_blocks(t: dict) -> list:
    overhead = t["overhead_vs_ideal"]
    summary = Bullets([
        f"effective concurrency {t['effective_concurrency']:.2f} of {t['concurrency']} "
        f"(sum of epoch compute {t['compute_s']:.0f} s / wall {t['wall_s']:.0f} s, first "
        f"placement to last end)",
        f"overhead vs the ideal {seconds(overhead) if overhead is None else f'{overhead:.2f}'}"
        f" (wall / (epoch compute / concurrency); 1.00 = every slot training all the time)",
        f"median start-up {seconds(t['median_startup_s'])} s (placement to first training "
        f"step), median gap {seconds(t['median_gap_s'])} s (a slot empty between trials)"])
    frame = pd.DataFrame([{"trial": r["trial_id"], "placed at (s)": seconds(r["placed_s"]),
                           "gap before (s)": seconds(r["gap_s"]),
                           "start-up (s)": seconds(r["startup_s"]),
                           "epoch compute (s)": seconds(r["compute_s"]),
                           "held slot (s)": seconds(r["held_s"])} for r in t["rows"]])
    return [summary, Table(frame, "Per trial, in order of placement")]
