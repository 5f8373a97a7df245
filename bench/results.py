"""bench/results.json (one entry per benchmark, each with its machine) and its Markdown table."""
from __future__ import annotations

import json
from pathlib import Path

from bench.machine import machine_line


def load_results(path: Path) -> dict:
    if not path.exists():
        return {"benchmarks": {}}
    return json.loads(path.read_text())


def save_entry(path: Path, entry: dict) -> dict:
    """Add or replace one benchmark's entry, keeping the others (run one, keep the rest)."""
    results = load_results(path)
    results["benchmarks"][entry["name"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


def markdown_table(results: dict) -> str:
    entries = list(results["benchmarks"].values())
    if not entries:
        return "(no benchmark results yet)\n"
    lines = ["| benchmark | result | goal | met | mode | measured |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        met = {True: "yes", False: "**no**", None: "-"}[e.get("met")]
        lines.append(f"| {e['name']} | {e['headline']} | {e['goal']} | {met} | {e['mode']} | "
                     f"{e['date'][:10]} |")
    lines.append("")
    machines = {machine_line(e["machine"]): [] for e in entries}
    for e in entries:
        machines[machine_line(e["machine"])].append(e["name"])
    for line, names in machines.items():
        label = "Machine" if len(machines) == 1 else f"Machine ({', '.join(names)})"
        lines.append(f"{label}: {line}.")
    notes = [(e["name"], note) for e in entries for note in e.get("notes", [])]
    if notes:
        lines += ["", "Notes:"] + [f"- {name}: {note}" for name, note in notes]
    errors = [e for e in entries if e.get("error")]
    lines += [f"- {e['name']}: FAILED: {e['error']}" for e in errors]
    return "\n".join(lines) + "\n"
