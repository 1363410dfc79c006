"""Text scorers on the edges a user hits: case, whitespace, typographic quotes, word edges."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tasks.scorers import ScoreContext, ScoreResult, score, scorer, validate_assertion
from tasks.suites.model import Case


def case(assertion_type: str, ideal: Any = None, **options: Any) -> Case:
    return Case(id="t-1", input="question", assertion={"type": assertion_type, **options},
                ideal=ideal)


def run(output: str | None, c: Case) -> ScoreResult:
    return asyncio.run(score(output, c))


@pytest.mark.parametrize(("output", "passed"), [
    ("Paris", True),
    ("  paris \n", True),
    ("PARIS", True),
    ("Paris.", False),
    ("The answer is Paris", False),
])
def test_exact_match_trims_and_ignores_case(output: str, passed: bool) -> None:
    result = run(output, case("exact_match", ["Paris"]))
    assert result.passed is passed
    assert result.score == (1.0 if passed else 0.0)


def test_exact_match_case_sensitive_and_inner_whitespace() -> None:
    c = case("exact_match", "New  York", case_sensitive=True)
    assert run("New York", c).passed is True  # runs of whitespace collapse
    assert run("new york", c).passed is False


def test_contains_any_of_the_ideals_and_reason_names_the_match() -> None:
    result = run("I think it is six.", case("contains", ["6", "six"]))
    assert result.passed is True
    assert "'six'" in result.reason


def test_contains_case_sensitivity() -> None:
    assert run("reply: ok", case("contains", "OK")).passed is True
    assert run("reply: ok", case("contains", "OK", case_sensitive=True)).passed is False


def test_whole_word_stops_matches_inside_words() -> None:
    assert run("I do not know", case("contains_any", ["no"])).passed is True
    assert run("I do not know", case("contains_any", ["no"], whole_word=True)).passed is False
    assert run("No, never.", case("contains_any", ["no"], whole_word=True)).passed is True
    assert run("It is 16.", case("contains", "6", whole_word=True)).passed is False
    assert run("answer: [Yes]", case("contains", "[Yes]", whole_word=True)).passed is True


def test_typographic_apostrophes_match_ascii_ideals() -> None:
    assert run("Sorry, I can\u2019t help with that.", case("contains_any", ["I can't"])).passed


def test_contains_all_scores_the_share_and_honours_threshold() -> None:
    c = case("contains_all", ["red", "green", "blue", "white"])
    result = run("red, green and blue", c)
    assert result.passed is False
    assert result.score == pytest.approx(0.75)
    assert "'white'" in result.reason
    lenient = case("contains_all", ["red", "green", "blue", "white"], threshold=0.7)
    assert run("red, green and blue", lenient).passed is True


def test_regex_pattern_flags_and_list() -> None:
    c = case("regex", pattern=r"^\d{4}-\d{2}-\d{2}$")
    assert run("Date:\n2026-01-15\n", c).passed is True  # ^ and $ match at line breaks
    assert run("15/01/2026", c).passed is False
    assert run("HELLO", case("regex", pattern="hello")).passed is True
    assert run("HELLO", case("regex", pattern="hello", case_sensitive=True)).passed is False
    assert run("cat", case("regex", pattern=["dog", "c.t"])).passed is True


def test_regex_falls_back_to_the_ideal_as_pattern() -> None:
    assert run("version 3.11", case("regex", [r"3\.1\d"])).passed is True


def test_negation_inverts_a_decided_result() -> None:
    c = case("not-contains", ["I can't help"])
    assert run("Here is how to reset it.", c).passed is True
    refused = run("Sorry, I can't help with that.", c)
    assert refused.passed is False
    assert refused.score == 0.0
    assert refused.reason.startswith("not (")


def test_no_output_and_unknown_type_are_skipped_not_guessed() -> None:
    assert run(None, case("contains", "x")).skipped
    unknown = run("x", case("contains_some", "x"))
    assert unknown.skipped and "contains_some" in unknown.reason
    assert unknown.score is None


@pytest.mark.parametrize(("c", "field"), [
    (case("contains", ""), "ideal"),
    (case("contains", "x", case_sensitive="yes"), "assertion.case_sensitive"),
    (case("contains", "x", whole_words=True), "assertion.whole_words"),
    (case("regex", pattern="(unclosed"), "assertion.pattern"),
    (case("regex"), "assertion.pattern"),
    (case("contains_all", ["a"], threshold=2), "assertion.threshold"),
    (case("exact_match"), "ideal"),
    (case("not-code_executes"), "assertion.type"),
])
def test_bad_options_are_load_time_problems(c: Case, field: str) -> None:
    problems = validate_assertion(c)
    assert field in [f for f, _ in problems], problems


def test_registry_rejects_duplicates_and_missing_descriptions() -> None:
    def fn(output: str, c: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
        return ScoreResult.ok(True, "fine")

    with pytest.raises(ValueError, match="registered twice"):
        scorer("contains", description="A second contains scorer.")(fn)
    with pytest.raises(ValueError, match="needs a description"):
        scorer("test_no_description", description="  ")(fn)


def test_a_scorer_bug_or_out_of_range_score_is_skipped_not_recorded() -> None:
    @scorer("test_out_of_range", description="Test scorer that returns an invalid score.")
    async def out_of_range(output: str, c: Case, opts: dict[str, Any],
                           ctx: ScoreContext) -> ScoreResult:
        return ScoreResult(True, 1.5, "too good")

    @scorer("test_raises", description="Test scorer that raises instead of scoring.")
    def raises(output: str, c: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
        raise KeyError("oops")

    bad = run("x", case("test_out_of_range"))
    assert bad.skipped and "invalid score 1.5" in bad.reason
    broken = run("x", case("test_raises"))
    assert broken.skipped and "KeyError" in broken.reason
