"""Every figure has a source (issue 22): docs/BENCHMARKS.md and the README's summary block are
exactly what `python -m bench docs` writes from the committed results, and no measured figure is
typed by hand into README.md or docs/*.md. Fast: no benchmark runs, only the generator."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from bench.docs import (
    BEGIN,
    END,
    MISSING,
    benchmarks_doc,
    expected,
    load_sources,
    readme_summary,
    with_summary,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 350
# Written whole by a generator and checked against it by a test: BENCHMARKS.md here, SETTINGS.md
# by tests/test_settings_doc.py (its numbers are settings' defaults and limits).
GENERATED_DOCS = {"BENCHMARKS.md", "SETTINGS.md"}

# ---- the scan ---------------------------------------------------------------------------------
UNITS = (r"ms|s|secs?|seconds?|min|minutes?|h|hours?|CPU-s|CPU-seconds|[kKMGT]i?B|%|"
         r"images/s|img/s|samples/s|it/s|[GT]FLOP/s|[GT]FLOP")
NUMBER = r"(?<![\w.\-/])~?\d+(?:\.\d+)?(?:\s?(?:-|–|to)\s?~?\d+(?:\.\d+)?)?"
FIGURE = re.compile(rf"{NUMBER}(?:\s?(?:{UNITS})(?![\w/])|[x×](?![\w]))")
# A number after a comparison is a goal or a limit ("<= 1.15x", "at most 64 MiB"), not a
# measurement.
THRESHOLD = re.compile(r"(?:<=|>=|<|>|≤|≥|at\s+most|at\s+least)\s*$")
# Figures that are definitions or settings, never measurements. Keep this short: each entry
# says why it is not a measured figure. (\s+: a phrase may wrap onto the next line.)
ALLOWED = [
    (re.compile(r"top\s+\d+\s+%"), "a search target's definition (the top 5 % of configurations)"),
    (re.compile(r"\d+\s+%\s+(?:CI|intervals?|bootstrap|lower\s+bound)"),
     "the confidence level of an interval"),
    (re.compile(r"outer\s+\d+\s+%\s+of\s+a\s+range"), "the report's rule for a range's edge"),
    (re.compile(r"\d+-\d+\s+%\s+crack\s+pixels"), "the synthetic generator's setting"),
]
CODE_SPAN = re.compile(r"`[^`\n]*`")  # code, flags and settings: `--search.trials=16`
GENERATED_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)


def blank(match: re.Match) -> str:
    """The match's text gone, its line breaks kept (so line numbers still point right)."""
    return re.sub(r"[^\n]", " ", match.group())


def hand_typed_figures(text: str) -> list[tuple[int, str]]:
    """(line number, figure) of every number with a unit outside generated blocks, code spans,
    thresholds and the allow-list."""
    text = GENERATED_BLOCK.sub(blank, text)
    text = CODE_SPAN.sub(blank, text)
    for pattern, _ in ALLOWED:
        text = pattern.sub(blank, text)
    return [(text.count("\n", 0, m.start()) + 1, m.group().strip())
            for m in FIGURE.finditer(text)
            if not THRESHOLD.search(text[max(0, m.start() - 20):m.start()])]


def scanned_files() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in GENERATED_DOCS)
    return [README, *docs]


def test_the_scan_finds_figures_and_lets_settings_through():
    flagged = [figure for _, figure in hand_typed_figures(
        "search took 135 s, 2.3 min in all; 111 images/s\n"
        "1.34x and 1.32 of 2; MFU 35.5 %; 281 MB / 132 MB; 4.5-5.5 min; ~20 min; 2.4 CPU-s\n")]
    assert flagged == ["135 s", "2.3 min", "111 images/s", "1.34x", "35.5 %", "281 MB",
                       "132 MB", "4.5-5.5 min", "~20 min", "2.4 CPU-s"]
    assert hand_typed_figures(
        "`--search.trials=16` on 2 cores, goal >= 1.5x, files of at most 1 MiB, the top 5 %\n"
        "target with 90 % CI; 16 trials x 2 seeds; 959x640 px; UNet width 8, 128 px\n"
        f"{BEGIN}\n| loop | 1.57x |\n{END}\n") == []


def test_no_hand_typed_figure_in_the_readme_or_docs():
    found = [f"{path.relative_to(ROOT)}:{line}: {figure}" for path in scanned_files()
             for line, figure in hand_typed_figures(path.read_text())]
    assert not found, (
        "figures typed by hand (a measured figure belongs in a result file and reaches the docs "
        "through `python -m bench docs`; a setting goes in `code`): " + "; ".join(found))


# ---- the generated files ------------------------------------------------------------------------
def test_committed_benchmark_doc_and_readme_summary_are_what_the_generator_writes():
    for path, text in expected(ROOT).items():
        assert path.read_text() == text, \
            f"{path.relative_to(ROOT)} is stale: run `python -m bench docs` (make docs)"


def test_the_summary_reads_the_search_result_rather_than_copying_it():
    sources = load_sources(ROOT)
    changed = copy.deepcopy(sources)
    held = changed["results"]["benchmarks"].setdefault("search", {}).setdefault(
        "figures", {}).setdefault("heldout", {})
    held.update(ratio_vs_random=9.87, ratio_vs_random_ci90=[6.54, 12.3],
                heldout_table_names=["table_a", "table_b"])
    summary = readme_summary(changed)
    assert "9.87x [90 % CI 6.54-12.30]" in summary and "table_a, table_b" in summary
    assert "9.87x" not in readme_summary(sources)


def test_what_a_result_lacks_is_printed_as_missing():
    entry = {"name": "loop", "goal": ">= 1.5x", "mode": "full", "met": True, "ratio": 1.6,
             "headline": "1.60x", "date": "2026-12-04T00:00:00+00:00",
             "machine": {"cpu": "Some CPU", "cores": 2},
             "figures": {"samples_per_s": {"ours": {"median": 2.0, "min": 1.0, "max": 3.0,
                                                    "n": 2}}}}
    doc = benchmarks_doc({"results": {"benchmarks": {"loop": entry}}, "gpu": {}, "tables": {}})
    section = doc.split("## loop", 1)[1].split("\n## ", 1)[0]
    assert f"Code version: {MISSING}" in section and f"Command as run: {MISSING}" in section
    assert f"load {MISSING}" in section
    assert "n = 2 (fewer than 3" in section  # a spread of two runs is flagged, not hidden
    assert "overhead\n\nWhat:" in doc and f"Result: {MISSING}" in doc  # no entry at all
    entry.update(code_version="abc123", command="python -m bench loop")
    doc = benchmarks_doc({"results": {"benchmarks": {"loop": entry}}, "gpu": {}, "tables": {}})
    assert "Code version: abc123" in doc and "`python -m bench loop`" in doc


def test_a_readme_without_its_markers_is_refused():
    with pytest.raises(ValueError, match="generated: bench summary"):
        with_summary("# a README\n", "summary")
    assert with_summary(f"a\n{BEGIN}\nold\n{END}\nb\n", f"{BEGIN}\nnew\n{END}") == \
        f"a\n{BEGIN}\nnew\n{END}\nb\n"


def test_bench_docs_check_passes_on_the_committed_files(capsys):
    from bench.__main__ import main

    assert main(["docs", "--check"]) == 0, capsys.readouterr().out


# ---- the README a newcomer reads ----------------------------------------------------------------
def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"
    head = "\n".join(lines[:8])
    assert "make sweep" in head and "make test" in head


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_links_between_the_readme_and_docs_resolve():
    broken = []
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(path.read_text()):
            if "://" not in target and not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken
