"""Pulling the answer out of a model's prose: fenced code blocks and numbers.

Models wrap JSON and code in Markdown fences and put numbers in sentences ("about 1,250 km");
the structured scorers share these helpers so they agree on what counts as the answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n"
    r"(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str


def fenced_blocks(text: str) -> list[Block]:
    """Every complete fenced block (```lang ... ```), in order, with its language tag lowercased."""
    return [Block(m["lang"].lower(), m["body"]) for m in _FENCE.finditer(text)]


def fenced_candidates(text: str, langs: tuple[str, ...]) -> list[str]:
    """Bodies of the blocks tagged with one of ``langs`` first, then untagged blocks."""
    blocks = fenced_blocks(text)
    tagged = [b.body for b in blocks if b.lang in langs]
    untagged = [b.body for b in blocks if not b.lang]
    return tagged + untagged


@dataclass(frozen=True)
class Number:
    value: float
    percent: bool
    text: str


# A number not glued to a word or another number: optional sign (ASCII or Unicode minus),
# digits with optional thousands commas, optional decimals and exponent, optional percent.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−]?)"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?P<frac>\.\d+)?"
    r"(?P<exp>[eE][-+]?\d+)?"
    r"(?![\w]|,\d{3})"
    r"(?P<pct>\s?(?:%|percent\b))?"
)


def numbers_in(text: str) -> list[Number]:
    """Every number written in ``text``, in order (``1,234.5``, ``-3``, ``−2.5e3``, ``45%``)."""
    found: list[Number] = []
    for m in _NUMBER.finditer(text):
        if not m["int"] and not m["frac"]:
            continue
        raw = (m["int"] or "").replace(",", "") + (m["frac"] or "") + (m["exp"] or "")
        try:
            value = float(raw)
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        if m["sign"]:
            value = -value
        found.append(Number(value, bool(m["pct"]), m.group(0).strip()))
    return found


def parse_number(text: str) -> Number | None:
    """``text`` as exactly one number (an ideal like ``"1,024"`` or ``"-3.5%"``), else None."""
    nums = numbers_in(text)
    if len(nums) != 1:
        return None
    rest = text.replace(nums[0].text, "", 1).strip(" \t\n$€£")
    return nums[0] if not rest else None
