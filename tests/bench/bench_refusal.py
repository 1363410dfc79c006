"""The refusal detector's quality and speed: precision, recall and F1 on the labelled set shipped
with the tests, and how fast it reads outputs.

Quality is printed per split: ``tune`` (the outputs the pattern was tuned on) and ``holdout``
(written with it, never tuned on: the honest estimate), then both together, with the counts and
every miss and false alarm of the held-out split, so a reader sees what kind of output fools it.

Speed: ``is_refusal`` per output against a baseline measured in the same run (a bare
case-insensitive substring test for "i can't" on the same head), and the Polars pass the
nightly aggregation runs over a column of outputs.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_refusal.py
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import polars as pl

from tasks.refusal import DETECTOR_VERSION, HEAD_CHARS, REFUSAL_PATTERN, is_refusal

LABELLED = Path(__file__).resolve().parents[1] / "tasks" / "scorers" / "refusal_labelled.jsonl"


@dataclass(frozen=True)
class Quality:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_labelled(path: Path = LABELLED) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def quality(rows: list[dict[str, object]]) -> Quality:
    got = [(is_refusal(str(r["text"])), bool(r["refusal"])) for r in rows]
    return Quality(
        tp=sum(p and t for p, t in got), fp=sum(p and not t for p, t in got),
        fn=sum(t and not p for p, t in got), tn=sum(not p and not t for p, t in got),
    )


def show(name: str, q: Quality) -> None:
    print(f"{name:8s} n={q.n:3d}  tp={q.tp:3d} fp={q.fp:2d} fn={q.fn:2d} tn={q.tn:3d}  "
          f"precision={q.precision:.3f} recall={q.recall:.3f} f1={q.f1:.3f}")


def speed(texts: list[str], rounds: int = 200) -> tuple[float, float, float]:
    """(µs per is_refusal call, µs per baseline substring test, Polars rows per second)."""
    started = time.perf_counter()
    for _ in range(rounds):
        for t in texts:
            is_refusal(t)
    per_call = (time.perf_counter() - started) / (rounds * len(texts)) * 1e6
    started = time.perf_counter()
    for _ in range(rounds):
        for t in texts:
            _ = "i can't" in t[:HEAD_CHARS].casefold()
    baseline = (time.perf_counter() - started) / (rounds * len(texts)) * 1e6
    column = pl.Series("output", texts * rounds)
    started = time.perf_counter()
    column.str.slice(0, HEAD_CHARS).str.contains(REFUSAL_PATTERN).sum()
    polars_rps = len(column) / (time.perf_counter() - started)
    return per_call, baseline, polars_rps


def main() -> None:
    rows = load_labelled()
    tune = [r for r in rows if r["split"] == "tune"]
    holdout = [r for r in rows if r["split"] == "holdout"]
    print(f"refusal detector v{DETECTOR_VERSION}, head {HEAD_CHARS} chars, {LABELLED.name}")
    show("tune", quality(tune))
    q_hold = quality(holdout)
    show("holdout", q_hold)
    q_all = quality(rows)
    show("all", q_all)
    for r in holdout:
        if is_refusal(str(r["text"])) != r["refusal"]:
            label = "missed refusal" if r["refusal"] else "false alarm"
            print(f"  holdout {label} ({r['kind']}): {str(r['text'])[:90]!r}")
    texts = [str(r["text"]) for r in rows]
    per_call, baseline, polars_rps = speed(texts)
    print(f"is_refusal {per_call:.2f} us/output; bare substring baseline {baseline:.2f} us "
          f"(ratio {per_call / baseline:.1f}x); Polars {polars_rps:,.0f} outputs/s")
    print(f"RESULT precision={q_all.precision:.3f} recall={q_all.recall:.3f} f1={q_all.f1:.3f} "
          f"n={q_all.n} holdout_precision={q_hold.precision:.3f} "
          f"holdout_recall={q_hold.recall:.3f} holdout_f1={q_hold.f1:.3f} holdout_n={q_hold.n} "
          f"per_output_us={per_call:.2f} ratio_to_substring={per_call / baseline:.1f} "
          f"polars_rows_per_s={polars_rps:.0f}")


if __name__ == "__main__":
    main()
