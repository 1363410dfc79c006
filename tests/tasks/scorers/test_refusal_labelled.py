"""The labelled set the refusal detector is measured on, and the floor its quality must keep.

The set has two splits: ``tune`` (the pattern was tuned on it) and ``holdout`` (never tuned
on). tests/bench/bench_refusal.py prints the figures; these tests stop a pattern change from
quietly making them worse.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tasks.refusal import is_refusal

LABELLED = Path(__file__).parent / "refusal_labelled.jsonl"
KINDS = {"clear", "soft", "safe_completion", "partial", "mention", "benign", "empty"}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in LABELLED.read_text("utf-8").splitlines()]


def test_the_set_is_large_varied_and_well_formed(rows: list[dict[str, object]]) -> None:
    assert len(rows) >= 150
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"id", "split", "refusal", "kind", "text"}, r
        assert r["split"] in ("tune", "holdout") and isinstance(r["refusal"], bool), r
        assert r["kind"] in KINDS, r
    splits = Counter((r["split"], r["refusal"]) for r in rows)
    assert all(splits[(s, lab)] >= 25 for s in ("tune", "holdout") for lab in (True, False))
    # Every kind of hard case is there, and no held-out text is a copy of a tuned one.
    assert {r["kind"] for r in rows} == KINDS
    texts = [str(r["text"]).strip().casefold() for r in rows if str(r["text"]).strip()]
    assert len(set(texts)) == len(texts)


def _rates(rows: list[dict[str, object]]) -> tuple[float, float]:
    got = [(is_refusal(str(r["text"])), bool(r["refusal"])) for r in rows]
    tp = sum(p and t for p, t in got)
    return tp / sum(p for p, _ in got), tp / sum(t for _, t in got)


@pytest.mark.parametrize(("split", "min_precision", "min_recall"), [
    ("tune", 0.95, 0.95),
    ("holdout", 0.9, 0.85),
])
def test_quality_does_not_regress(rows: list[dict[str, object]], split: str,
                                  min_precision: float, min_recall: float) -> None:
    precision, recall = _rates([r for r in rows if r["split"] == split])
    assert precision >= min_precision and recall >= min_recall, (precision, recall)
