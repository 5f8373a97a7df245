"""``python -m bench docs`` (``make docs``): docs/BENCHMARKS.md and the README's summary block,
generated from the committed result files; the only place a benchmark figure is written by hand
is nowhere. tests/test_benchmarks_doc.py fails when either differs from what this writes.

Sources: bench/results.json (every CPU benchmark, one entry each, as ``python -m bench`` writes
it), the GPU result files (``GPU_SOURCES``) and the learning-curve tables' headers
(bench/lc_tables/). What a source lacks (a code version, the command as run, repeats, the
machine's load) is printed as **missing**, never filled in."""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from bench.child import REPO_ROOT
from bench.docs_figures import short_machine
from bench.docs_format import MISSING, is_cell, is_scalar, is_spread, num, table
from bench.docs_prose import GPU_READING, INTRO, READING
from bench.gpu_results import GPU_SOURCES, GPU_TESTS_LOG
from bench.machine import machine_line
from bench.registry import BENCHMARKS

RESULTS = Path("bench/results.json")
DOC = Path("docs/BENCHMARKS.md")
README = Path("README.md")
LC_TABLES = Path("bench/lc_tables")
BEGIN = "<!-- generated: bench summary (python -m bench docs; do not edit by hand) -->"
END = "<!-- end generated -->"
MIN_REPEATS = 3  # issue 22: every timing at least 3 repeats in one run
# Per-run records, curves and seed lists: summarised elsewhere in an entry, kept in the file.
SKIP_KEYS = {"runs", "summary", "search_seeds", "plot", "raw", "table", "run_dir", "report"}



# ---- reading the sources ------------------------------------------------------------------
def load_sources(root: Path = REPO_ROOT) -> dict:
    results = json.loads((root / RESULTS).read_text()) if (root / RESULTS).exists() \
        else {"benchmarks": {}}
    gpu = {s["key"]: json.loads((root / s["path"]).read_text())
           for s in GPU_SOURCES if (root / s["path"]).exists()}
    log = root / GPU_TESTS_LOG
    if log.exists():  # the summary line pytest printed last
        passed = [line for line in log.read_text().splitlines() if " passed" in line]
        gpu["tests"] = passed[-1].strip(" =") if passed else None
    tables = {}
    for path in sorted((root / LC_TABLES).glob("*.json.gz")):
        with gzip.open(path, "rt") as f:
            head = json.load(f)
        head.pop("configs", None)  # the runs themselves: thousands of rows
        tables[path.name.removesuffix(".json.gz")] = head
    return {"results": results, "gpu": gpu, "tables": tables}


# ---- formatting ---------------------------------------------------------------------------
def machine_text(machine: dict | None) -> str:
    if not machine:
        return MISSING
    load = machine.get("load_avg_1m")
    load_text = f"load {load} (1-min average at the start)" if load is not None else \
        f"load {MISSING}"
    return f"{machine_line(machine)}; {load_text}"


# ---- figures of one entry, generically ----------------------------------------------------
def collect(value, path: str, spreads: list, tables: list, lines: list) -> None:
    """Walk an entry's figures: spreads (min/median/max/n) into one table, lists of records
    and dicts of records into tables, everything else one line per scalar."""
    if is_spread(value):
        spreads.append({"figure": path, **{k: value[k] for k in ("n", "min", "median", "max")}})
    elif isinstance(value, dict):
        inner = list(value.values())
        if path and len(value) >= 2 and all(
                isinstance(v, dict) and not is_spread(v) and all(is_cell(x) for x in v.values())
                for v in inner):
            tables.append((path, [{"": k, **v} for k, v in value.items()]))
        elif value and all(is_scalar(v) for v in inner):
            lines.append(f"- {path}: {num(value)}")
        else:
            for key, item in value.items():
                if key not in SKIP_KEYS:
                    collect(item, f"{path}.{key}" if path else str(key), spreads, tables, lines)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if all(is_cell(x) for v in value for x in v.values()):
            tables.append((path, value))
        else:
            lines.append(f"- {path}: {len(value)} records (in the source file)")
    elif isinstance(value, list) and not is_scalar(value):
        lines.append(f"- {path}: {len(value)} values (in the source file)")
    elif isinstance(value, str) and "\n" in value:  # a table a benchmark wrote as text
        tables.append((path, value.strip().splitlines()))
    else:
        lines.append(f"- {path}: {num(value)}")


def figures_block(figures: dict) -> tuple[list[str], list[dict]]:
    spreads, tables, lines = [], [], []
    collect(figures, "", spreads, tables, lines)
    out = []
    if spreads:
        out += ["Repeats (min / median / max over n runs in one invocation):", ""]
        out += table(spreads) + [""]
    if lines:
        out += ["Figures:", ""] + lines + [""]
    for path, rows in tables:
        text = rows if rows and isinstance(rows[0], str) else table(rows)
        out += [f"`{path}`:", ""] + text + [""]
    return out, spreads


def repeats_text(spreads: list[dict]) -> str:
    if not spreads:
        return f"{MISSING} (one run per side, no spread recorded)"
    low = min(s["n"] for s in spreads)
    text = f"n = {low}" if low == max(s["n"] for s in spreads) else \
        f"n = {low}-{max(s['n'] for s in spreads)}"
    return text + ("" if low >= MIN_REPEATS else f" (fewer than {MIN_REPEATS}: the spread "
                                                  "is not a measure of noise)")


# ---- docs/BENCHMARKS.md ---------------------------------------------------------------------
def entry_section(name: str, entry: dict | None) -> list[str]:
    bench = BENCHMARKS.get(name)
    out = [f"## {name}", ""]
    if bench:
        out += [f"What: {bench.what}.", "", f"Goal: {bench.goal}.", ""]
    if entry is None:
        return out + [f"Result: {MISSING}: no entry in bench/results.json (run "
                      f"`python -m bench {name}`).", ""] + reading(name)
    if entry.get("error"):
        out += [f"Result: FAILED: {entry['error']}", ""]
    met = {True: "yes", False: "**no**", None: "-"}[entry.get("met")]
    body, spreads = figures_block(entry.get("figures") or {})
    out += [f"Result: {entry.get('headline')} (goal met: {met}; {entry.get('mode')} mode).", "",
            f"- Machine: {machine_text(entry.get('machine'))}",
            f"- Date: {entry.get('date', MISSING)}; run time {num(entry.get('wall_s'))} s",
            f"- Code version: {entry.get('code_version') or MISSING}",
            f"- Command as run: `{entry['command']}`" if entry.get("command")
            else f"- Command as run: {MISSING}",
            f"- Reproduce: `python -m bench {name}`",
            f"- Repeats: {repeats_text(spreads)}", ""]
    out += body
    notes = entry.get("notes") or []
    if notes:
        out += ["Notes (written by the benchmark):", ""]
        for note in notes:
            first, _, rest = note.partition("\n")
            out += [f"- {first}"] + (["", rest, ""] if rest else [])
        out.append("")
    return out + (methods_table() if name == "search-dev" else []) + reading(name)


def methods_table() -> list[str]:
    """The search methods the search benchmarks compare, as bench/lc_methods.py defines them."""
    from bench.lc_methods import METHODS

    rows = [{"method": name, "search": search, "scheduler": scheduler, "what it is": what}
            for name, (search, scheduler, what) in METHODS.items()]
    return ["The methods (bench/lc_methods.py):", ""] + table(rows, width=200) + [""]


def reading(name: str) -> list[str]:
    text = READING.get(name)
    return ["How to read it:", "", text.strip(), ""] if text else []


def overview(results: dict) -> list[str]:
    rows = []
    for name in BENCHMARKS:
        entry = results["benchmarks"].get(name)
        if entry is None:
            result = MISSING + (" in bench/results.json: the GPU sections below" if
                                BENCHMARKS[name].needs == "gpu" else "")
            rows.append({"benchmark": name, "result": result, "goal":
                         BENCHMARKS[name].goal, "met": "-", "machine": "-", "date": "-",
                         "repeats": "-"})
            continue
        _, spreads = figures_block(entry.get("figures") or {})
        rows.append({"benchmark": name, "result": entry.get("headline"),
                     "goal": entry.get("goal"),
                     "met": {True: "yes", False: "**no**", None: "-"}[entry.get("met")],
                     "machine": short_machine(entry.get("machine")),
                     "date": entry.get("date", "")[:10] or MISSING,
                     "repeats": repeats_text(spreads).split(" (")[0]})
    for name, entry in results["benchmarks"].items():  # entries the registry no longer names
        if name not in BENCHMARKS:
            rows.append({"benchmark": name, "result": entry.get("headline"), "goal": "-",
                         "met": "-", "machine": short_machine(entry.get("machine")),
                         "date": entry.get("date", "")[:10], "repeats": "-"})
    return table(rows, width=400)


def gpu_sections(gpu: dict) -> list[str]:
    from bench.docs_figures import gpu_derived

    out = []
    for source in GPU_SOURCES:
        data = gpu.get(source["key"])
        out += [f"## {source['title']}", ""]
        if data is None:
            out += [f"Result: {MISSING}: {source['path']} is not committed.", ""]
            continue
        machine = data.get("machine")
        out += [f"- Source: [{source['path']}](../{source['path']})",
                f"- Machine: {machine_text(machine)}" if machine else
                f"- Machine: {data.get('device', MISSING)}, {data.get('cpus', '?')} CPUs, "
                f"torch {data.get('torch', '?')} (CPU model and load {MISSING})",
                f"- Date: {data.get('date') or MISSING} in the file (written by commit "
                f"{source['added']}); code version: {data.get('code_version') or MISSING}",
                f"- Command as run: `{source['command']}` (as that commit recorded it)",
                ""]
        if source["key"] == "gpu_sweep":
            out += [f"- `pytest -m gpu`, rerun after the loop's prefetch (another H200, the "
                    f"carry unpacked on PYTHONPATH; written by commit 5d3d151, 2026-11-26): "
                    f"{gpu.get('tests') or MISSING} ([log](../{GPU_TESTS_LOG}))", ""]
        derived = gpu_derived(source["key"], data)
        if derived:
            out += ["Derived here from the file's own fields:", ""] + derived + [""]
        skip = {"machine", *source.get("skip", ())}
        body, spreads = figures_block({k: v for k, v in data.items() if k not in skip})
        out += [f"- Repeats: {repeats_text(spreads)}", ""] + body
        text = GPU_READING.get(source["key"])
        if text:
            out += ["How to read it:", "", text.strip(), ""]
    return out


def tables_section(tables: dict) -> list[str]:
    from bench.lc_search import DEVELOPMENT_TABLES, HELDOUT_TABLES

    rows = []
    for name, head in tables.items():
        split = "development" if name in DEVELOPMENT_TABLES else \
            "held out" if name in HELDOUT_TABLES else "-"
        rows.append({"table": f"[{name}](../bench/lc_tables/{name}.json.gz)", "split": split,
                     "runs": head.get("runs"), "complete": head.get("complete"),
                     "seconds of its last session": head.get("last_session_s"),
                     "machine": short_machine(head.get("machine")),
                     "load": (head.get("machine") or {}).get("load_avg_1m"),
                     "code version": head.get("code_version") or MISSING,
                     "settings": head.get("settings", {}).get("folder")})
    if not rows:
        return ["## Learning-curve tables", "", f"{MISSING}: none under bench/lc_tables/.", ""]
    return ["## Learning-curve tables", "",
            "Made by `make lc-tables` (`python -m bench.lc_table --problem NAME`); the search "
            "benchmarks replay searches on them (docs/SEARCH.md).", ""] + table(rows) + [""]


def benchmarks_doc(sources: dict) -> str:
    results = sources["results"]
    out = ["# Benchmarks", "", INTRO.strip(), "", "## Overview", ""] + overview(results) + [""]
    names = list(BENCHMARKS) + [n for n in results["benchmarks"] if n not in BENCHMARKS]
    for name in names:
        if name == "gpu" and name not in results["benchmarks"]:
            continue  # the GPU results have their own sections below
        out += entry_section(name, results["benchmarks"].get(name))
    out += gpu_sections(sources.get("gpu", {}))
    out += tables_section(sources.get("tables", {}))
    return "\n".join(out).rstrip() + "\n"


# ---- the README's summary -----------------------------------------------------------------
def readme_summary(sources: dict) -> str:
    from bench.docs_figures import summary_rows

    lines = [BEGIN, ""] + table(summary_rows(sources), width=400) + [
        "", "Every figure with its spread, machine, date and command: "
            "[docs/BENCHMARKS.md](docs/BENCHMARKS.md).", "", END]
    return "\n".join(lines)


def with_summary(readme: str, summary: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or \
            readme.index(BEGIN) > readme.index(END):
        raise ValueError(f"README.md needs one '{BEGIN}' line followed by one '{END}' line")
    head, rest = readme.split(BEGIN)
    return head + summary + rest.split(END, 1)[1]


# ---- writing ------------------------------------------------------------------------------
def expected(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every generated file's text, from the committed sources."""
    sources = load_sources(root)
    return {root / DOC: benchmarks_doc(sources),
            root / README: with_summary((root / README).read_text(), readme_summary(sources))}


def write_docs(root: Path = REPO_ROOT) -> list[Path]:
    changed = []
    for path, text in expected(root).items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed


def stale(root: Path = REPO_ROOT) -> list[Path]:
    return [p for p, text in expected(root).items() if not p.exists() or p.read_text() != text]


def doc_beside(results_path: Path) -> Path:
    """A results file other than the committed one (tiny runs, --results) gets its own
    benchmark page beside it, from the same generator; the committed one regenerates docs/."""
    if results_path.resolve() == (REPO_ROOT / RESULTS).resolve():
        try:
            write_docs()
        except ValueError as error:  # the results are saved; only the page waits
            print(f"warning: docs not regenerated: {error}", file=sys.stderr)
        return REPO_ROOT / DOC
    results = json.loads(results_path.read_text())
    page = results_path.with_suffix(".md")
    page.write_text(benchmarks_doc({"results": results, "gpu": {}, "tables": {}}))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench docs",
        description="Write docs/BENCHMARKS.md and the README's summary block from the committed "
                    "results (bench/results.json, the GPU result files, bench/lc_tables/).")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a generated file is stale")
    args = parser.parse_args(argv)
    try:
        return check() if args.check else write()
    except ValueError as error:  # a README without its summary markers
        print(f"error: {error}", file=sys.stderr)
        return 2


def check() -> int:
    behind = stale()
    for path in behind:
        print(f"stale: {path.relative_to(REPO_ROOT)} (run `python -m bench docs`)")
    return 1 if behind else 0


def write() -> int:
    for path in write_docs():
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
