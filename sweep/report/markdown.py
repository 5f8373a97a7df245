"""report.md: the same sections as the HTML, for a terminal or a pull request. Plots are in
report.html; here each is named where it would stand."""
from __future__ import annotations

from sweep.report.document import Block, Bullets, Image, Report, Table, Text

PREFIX = {"warning": "> **Warning:** ", "missing": "> *Missing:* ", "note": "> ",
          "verdict": "**Verdict:** ", "text": ""}


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", f"_{report.subtitle}_", ""]
    for section in report.sections:
        lines += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            lines += block_markdown(block) + [""]
    return "\n".join(lines)


def block_markdown(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [PREFIX.get(block.kind, "") + block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Table):
        return table_markdown(block)
    if isinstance(block, Image):
        return [f"*Plot in report.html: {block.alt}.*"]
    raise TypeError(f"unknown block {type(block).__name__}")


def table_markdown(table: Table) -> list[str]:
    def row(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines.append(row(table.frame.columns))
    lines.append("|" + "---|" * len(table.frame.columns))
    lines += [row(values) for values in table.frame.itertuples(index=False)]
    return lines
