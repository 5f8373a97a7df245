"""Formatting shared by the benchmark doc and its README summary (bench/docs.py,
bench/docs_figures.py): numbers, percentages and Markdown tables, so both print a figure alike."""
from __future__ import annotations

import math

MISSING = "**missing**"  # printed where a result lacks what the doc asks for
NAME_KEYS = ("", "benchmark", "what", "figure", "variant", "method", "trial", "table")


def num(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}g}"
    if isinstance(value, list):
        return "[" + ", ".join(num(v, digits) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={num(v, digits)}" for k, v in value.items())
    return str(value).replace("|", "/").replace("\n", " ")


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def is_spread(value) -> bool:
    return isinstance(value, dict) and {"median", "min", "max", "n"} <= set(value)


def is_scalar(value) -> bool:
    return not isinstance(value, (dict, list)) or (
        isinstance(value, list) and len(value) <= 12 and all(not isinstance(v, (dict, list))
                                                              for v in value))


def is_cell(value) -> bool:
    """Fits one table cell: a scalar, a short list, or a small dict of scalars."""
    return is_scalar(value) or (isinstance(value, dict) and len(value) <= 6
                                and all(is_scalar(v) for v in value.values()))


def table(rows: list[dict], width: int = 120) -> list[str]:
    """Rows of dicts as one Markdown table (every key a column; cells cut at ``width``)."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    # What a row is about first (a method, a trial, a variant), then its figures.
    columns.sort(key=lambda c: c not in NAME_KEYS)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(num(row.get(c))[:width] for c in columns) + " |")
    return lines
