"""Text-matching scorers: exact_match, contains, contains_any, contains_all, regex."""

from __future__ import annotations

import re
from typing import Any

from tasks.scorers.base import ScoreContext, ScoreResult, scorer
from tasks.suites import Case


def _norm(text: str, case_sensitive: bool) -> str:
    text = " ".join(text.split())
    return text if case_sensitive else text.casefold()


@scorer(
    "exact_match",
    description="Output equals one of the ideal answers (whitespace-trimmed; case-insensitive "
    "unless case_sensitive=true).",
    needs_ideal=True,
    options=("case_sensitive",),
)
def exact_match(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs = bool(opts.get("case_sensitive", False))
    got = _norm(output, cs)
    for ideal in case.ideals:
        if got == _norm(ideal, cs):
            return ScoreResult.ok(True, f"output equals {ideal!r}")
    return ScoreResult.ok(False, f"output does not equal any of {case.ideals!r}")


@scorer(
    "contains",
    description="Output contains the ideal answer (any of them when ideal is a list).",
    needs_ideal=True,
    options=("case_sensitive",),
)
def contains(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs = bool(opts.get("case_sensitive", False))
    got = _norm(output, cs)
    for ideal in case.ideals:
        if _norm(ideal, cs) in got:
            return ScoreResult.ok(True, f"output contains {ideal!r}")
    return ScoreResult.ok(False, f"output contains none of {case.ideals!r}")


@scorer(
    "contains_any",
    description="Output contains at least one of the ideal strings.",
    needs_ideal=True,
    options=("case_sensitive",),
)
def contains_any(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs = bool(opts.get("case_sensitive", False))
    got = _norm(output, cs)
    hits = [i for i in case.ideals if _norm(i, cs) in got]
    if hits:
        return ScoreResult.ok(True, f"output contains {hits[0]!r}")
    return ScoreResult.ok(False, f"output contains none of {case.ideals!r}")


@scorer(
    "contains_all",
    description="Output contains every one of the ideal strings; score is the share found.",
    needs_ideal=True,
    options=("case_sensitive",),
)
def contains_all(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs = bool(opts.get("case_sensitive", False))
    got = _norm(output, cs)
    missing = [i for i in case.ideals if _norm(i, cs) not in got]
    share = 1 - len(missing) / len(case.ideals)
    if not missing:
        return ScoreResult.ok(True, "output contains all ideal strings", 1.0)
    return ScoreResult.ok(False, f"output lacks {missing!r}", share)


@scorer(
    "regex",
    description="Output matches the regular expression in `pattern` (or the ideal when no "
    "pattern is given); case-insensitive unless case_sensitive=true.",
    options=("pattern", "case_sensitive"),
)
def regex(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    patterns = [opts["pattern"]] if opts.get("pattern") else case.ideals
    if not patterns:
        return ScoreResult.skip("regex needs a `pattern` option or an ideal")
    flags = 0 if opts.get("case_sensitive", False) else re.IGNORECASE
    for pattern in patterns:
        try:
            if re.search(pattern, output, flags | re.MULTILINE):
                return ScoreResult.ok(True, f"output matches /{pattern}/")
        except re.error as exc:
            return ScoreResult.skip(f"invalid pattern /{pattern}/: {exc}")
    return ScoreResult.ok(False, f"output matches none of {patterns!r}")
