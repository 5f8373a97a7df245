"""A renderer-neutral report: sections of text, tables and images. html.py and markdown.py turn
it into files, so both say the same thing."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Text:
    text: str  # `backticks` become code
    kind: str = "text"  # text | warning | missing | note | verdict


@dataclass
class Bullets:
    items: list[str]
    kind: str = "text"


@dataclass
class Table:
    frame: pd.DataFrame  # cells already formatted as strings
    caption: str = ""


@dataclass
class Image:
    png: bytes
    alt: str
    caption: str = ""


Block = Text | Bullets | Table | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]
