"""One self-contained HTML file: inline CSS, plots as base64 PNG, no script, no network."""
from __future__ import annotations

import base64
import html
import re

from sweep.report.document import Block, Bullets, Image, Report, Section, Table, Text

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1240px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
.subtitle { color: #59636e; font-size: 13px; margin-bottom: 16px; word-break: break-all; }
nav { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 16px;
      font-size: 14px; columns: 2; }
nav a { color: #0969da; text-decoration: none; display: block; }
code { background: #eff1f3; padding: 1px 5px; border-radius: 4px; font-size: 90%; }
.box { border-left: 4px solid; border-radius: 4px; padding: 8px 12px; margin: 10px 0; }
.warning { background: #fff8c5; border-color: #d4a72c; }
.missing { background: #f6f8fa; border-color: #8c959f; color: #3d444d; }
.note { background: #ddf4ff; border-color: #54aeff; }
.verdict { background: #dafbe1; border-color: #4ac26b; font-weight: 600; }
ul.missing { border-left: 4px solid #8c959f; background: #f6f8fa; padding: 6px 12px 6px 32px; }
.table-wrap { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 12.5px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; color: #3d444d;
          white-space: nowrap; }
th, td { border: 1px solid #d0d7de; padding: 3px 6px; white-space: nowrap; }
th { background: #f0f3f6; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #f9fafb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; min-width: 16em; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: 13px; }
"""
NUMBER = re.compile(r"^([-+]?\d[\d,]*\.?\d*(e[-+]?\d+)?|—)( / ([-+]?\d[\d.]*|—))?$")


def render_html(report: Report) -> str:
    anchors = unique_anchors(report.sections)
    toc = "".join(f'<a href="#{a}">{inline(s.title)}</a>' for s, a in zip(report.sections, anchors))
    body = "".join(section_html(s, a) for s, a in zip(report.sections, anchors))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{inline(report.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{inline(report.title)}</h1><div class=\"subtitle\">{inline(report.subtitle)}"
            f"</div><nav>{toc}</nav>{body}</body></html>\n")


def unique_anchors(sections: list[Section]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for section in sections:
        count = seen.get(section.anchor, 0)
        seen[section.anchor] = count + 1
        out.append(section.anchor + (f"-{count}" if count else ""))
    return out


def section_html(section: Section, anchor: str) -> str:
    blocks = "".join(block_html(b) for b in section.blocks)
    return f'<section><h{section.level} id="{anchor}">{inline(section.title)}' \
           f"</h{section.level}>{blocks}</section>"


def block_html(block: Block) -> str:
    if isinstance(block, Text):
        kind = "" if block.kind == "text" else f' class="box {block.kind}"'
        return f"<p{kind}>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{inline(item)}</li>" for item in block.items)
        return f'<ul class="{block.kind}">{items}</ul>'
    if isinstance(block, Table):
        return table_html(block)
    if isinstance(block, Image):
        data = base64.b64encode(block.png).decode("ascii")
        caption = f"<figcaption>{inline(block.caption)}</figcaption>" if block.caption else ""
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
                f"{caption}</figure>")
    raise TypeError(f"unknown block {type(block).__name__}")


def table_html(table: Table) -> str:
    frame = table.frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(cell_html(str(v)) for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    caption = f"<caption>{inline(table.caption)}</caption>" if table.caption else ""
    return (f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")


def cell_html(value: str) -> str:
    kind = "num" if NUMBER.match(value) else "wrap" if len(value) > 40 else ""
    attribute = f' class="{kind}"' if kind else ""
    return f"<td{attribute}>{html.escape(value)}</td>"


def inline(text: str) -> str:
    """Escape, then turn `backticks` into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
