"""Text-matching scorers: exact_match, contains, contains_any, contains_all, regex.

All of them collapse runs of whitespace before comparing (a model's line wrapping is not an
answer), treat typographic quotes as ASCII ones, and compare case-insensitively unless
``case_sensitive: true``. ``whole_word: true`` stops a short ideal from matching inside a
longer word ("no" inside "not", "6" inside "16").
"""

from __future__ import annotations

import re
from typing import Any

from tasks.scorers.base import (
    ScoreContext,
    ScoreResult,
    check_bool,
    check_nonempty_ideals,
    check_threshold,
    scorer,
)
from tasks.suites.model import Case

# Typographic quotes compare equal to ASCII ones: "I can’t" is "I can't" to a reader.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def _norm(text: str, case_sensitive: bool) -> str:
    text = " ".join(text.translate(_QUOTES).split())
    return text if case_sensitive else text.casefold()


def _found(needle: str, haystack: str, whole_word: bool) -> bool:
    if not whole_word:
        return needle in haystack
    # \b only works next to word characters; an ideal like "[Yes]" or "$5" gets a lookaround
    # that asks for "no word character" on each side instead.
    pattern = rf"(?<!\w){re.escape(needle)}(?!\w)"
    return re.search(pattern, haystack) is not None


def _text_check(case: Case, opts: dict[str, Any]) -> list[tuple[str, str]]:
    return check_bool(opts, "case_sensitive", "whole_word") + check_nonempty_ideals(case)


def _flags(opts: dict[str, Any]) -> tuple[bool, bool]:
    return bool(opts.get("case_sensitive", False)), bool(opts.get("whole_word", False))


@scorer(
    "exact_match",
    description="Output equals one of the ideal answers after trimming and collapsing whitespace "
    "(case-insensitive unless case_sensitive=true).",
    needs_ideal=True,
    options=("case_sensitive",),
    check=lambda case, opts: check_bool(opts, "case_sensitive"),
)
def exact_match(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs = bool(opts.get("case_sensitive", False))
    got = _norm(output, cs)
    for ideal in case.ideals:
        if got == _norm(ideal, cs):
            return ScoreResult.ok(True, f"output equals {ideal!r}")
    return ScoreResult.ok(False, f"output {_clip(output)!r} equals none of {case.ideals!r}")


@scorer(
    "contains",
    description="Output contains the ideal answer (any of them when ideal is a list); options "
    "case_sensitive, whole_word.",
    needs_ideal=True,
    options=("case_sensitive", "whole_word"),
    check=_text_check,
)
def contains(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    return contains_any(output, case, opts, ctx)


@scorer(
    "contains_any",
    description="Output contains at least one of the ideal strings; options case_sensitive, "
    "whole_word.",
    needs_ideal=True,
    options=("case_sensitive", "whole_word"),
    check=_text_check,
)
def contains_any(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs, ww = _flags(opts)
    got = _norm(output, cs)
    for ideal in case.ideals:
        if _found(_norm(ideal, cs), got, ww):
            return ScoreResult.ok(True, f"output contains {ideal!r}")
    return ScoreResult.ok(False, f"output contains none of {case.ideals!r}")


@scorer(
    "contains_all",
    description="Output contains every ideal string; score is the share found, and it passes "
    "when that share reaches `threshold` (default 1.0). Options case_sensitive, whole_word.",
    needs_ideal=True,
    options=("case_sensitive", "whole_word", "threshold"),
    check=lambda case, opts: _text_check(case, opts) + check_threshold(opts),
)
def contains_all(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    cs, ww = _flags(opts)
    threshold = float(opts.get("threshold", 1.0))
    got = _norm(output, cs)
    missing = [i for i in case.ideals if not _found(_norm(i, cs), got, ww)]
    share = 1 - len(missing) / len(case.ideals)
    if not missing:
        return ScoreResult.ok(True, "output contains all ideal strings", 1.0)
    found = len(case.ideals) - len(missing)
    return ScoreResult.ok(share >= threshold,
                          f"output contains {found}/{len(case.ideals)}; lacks {missing!r}", share)


def _regex_patterns(case: Case, opts: dict[str, Any]) -> list[str]:
    pattern = opts.get("pattern")
    if pattern is None:
        return case.ideals
    return [pattern] if isinstance(pattern, str) else list(pattern)


def _regex_check(case: Case, opts: dict[str, Any]) -> list[tuple[str, str]]:
    problems = check_bool(opts, "case_sensitive")
    pattern = opts.get("pattern")
    if pattern is not None and not (
        isinstance(pattern, str) or (isinstance(pattern, list) and pattern
                                     and all(isinstance(p, str) for p in pattern))
    ):
        return [*problems, ("assertion.pattern", "must be a string or a list of strings")]
    patterns = _regex_patterns(case, opts)
    where = "assertion.pattern" if pattern is not None else "ideal"
    if not patterns:
        problems.append(("assertion.pattern", "regex needs a `pattern` option or an ideal"))
    for p in patterns:
        if not p:
            problems.append((where, "an empty pattern matches any output"))
            continue
        try:
            re.compile(p)
        except re.error as exc:
            problems.append((where, f"invalid regular expression /{p}/: {exc}"))
    return problems


@scorer(
    "regex",
    description="Output matches the regular expression in `pattern` (a string or a list: any "
    "may match), or the ideal when no pattern is given; case-insensitive unless "
    "case_sensitive=true; ^ and $ match at line breaks.",
    options=("pattern", "case_sensitive"),
    check=_regex_check,
)
def regex(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    patterns = _regex_patterns(case, opts)
    if not patterns:
        return ScoreResult.skip("regex needs a `pattern` option or an ideal")
    flags = re.MULTILINE | (0 if opts.get("case_sensitive", False) else re.IGNORECASE)
    for pattern in patterns:
        try:
            if re.search(pattern, output, flags):
                return ScoreResult.ok(True, f"output matches /{pattern}/")
        except re.error as exc:
            return ScoreResult.skip(f"invalid pattern /{pattern}/: {exc}")
    shown = patterns[0] if len(patterns) == 1 else patterns
    return ScoreResult.ok(False, f"output matches none of /{shown}/")


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
