"""is_json, json_schema and numeric on what models really write: fences, prose, commas, signs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tasks.scorers import ScoreResult, score, validate_assertion
from tasks.scorers.extract import numbers_in
from tasks.suites.model import Case


def case(assertion_type: str, ideal: Any = None, **options: Any) -> Case:
    return Case(id="t-1", input="question", assertion={"type": assertion_type, **options},
                ideal=ideal)


def run(output: str, c: Case) -> ScoreResult:
    return asyncio.run(score(output, c))


FENCED = 'Here you go:\n\n```json\n{"status": "ok", "n": 3}\n```\nAnything else?'


@pytest.mark.parametrize(("output", "passed"), [
    ('{"status": "ok"}', True),
    ('  [1, 2, 3]\n', True),
    (FENCED, True),
    ("```\n{\"a\": 1}\n```", True),
    ("{'status': 'ok'}", False),  # Python, not JSON
    ('{"status": "ok",}', False),
    ("The answer is ok.", False),
])
def test_is_json(output: str, passed: bool) -> None:
    assert run(output, case("is_json")).passed is passed


def test_is_json_strict_and_kind() -> None:
    assert run(FENCED, case("is_json", allow_fenced=False)).passed is False
    assert run("[1]", case("is_json", kind="object")).passed is False
    assert run("[1]", case("is_json", kind="array")).passed is True
    assert "not JSON" in run("nope", case("is_json")).reason


SCHEMA = {"type": "object", "properties": {"status": {"const": "ok"}, "n": {"type": "integer"}},
          "required": ["status"], "additionalProperties": False}


def test_json_schema_accepts_fenced_json_that_matches() -> None:
    assert run(FENCED, case("json_schema", schema=SCHEMA)).passed is True


def test_json_schema_reason_names_the_violation() -> None:
    result = run('{"status": "ok", "n": "three"}', case("json_schema", schema=SCHEMA))
    assert result.passed is False
    assert "/n" in result.reason and "integer" in result.reason
    extra = run('{"status": "ok", "extra": 1}', case("json_schema", schema=SCHEMA))
    assert extra.passed is False and "extra" in extra.reason


def test_json_schema_bad_schema_is_a_load_problem() -> None:
    fields = [f for f, _ in validate_assertion(case("json_schema", schema={"type": "objekt"}))]
    assert any(f.startswith("assertion.schema") for f in fields)
    assert ("assertion.schema" in
            [f for f, _ in validate_assertion(case("json_schema", schema="{}"))])


@pytest.mark.parametrize(("text", "values"), [
    ("The answer is 6.", [6]),
    ("It is about 1,250 km, not 1,000.", [1250, 1000]),
    ("Temperatures fell to -3.5 and then \u22122.", [-3.5, -2]),
    ("Roughly 45% of 2,000", [45, 2000]),
    ("Dated 2026-01-15", [2026, 1, 15]),
    ("values: 3,4 and .5 and 1e3", [3, 4, 0.5, 1000]),
    ("GPT4 and v2 are names, not numbers", []),
])
def test_numbers_are_read_from_prose(text: str, values: list[float]) -> None:
    assert [n.value for n in numbers_in(text)] == pytest.approx(values)


@pytest.mark.parametrize(("output", "ideal", "options", "passed"), [
    ("The answer is 6.", "6", {}, True),
    ("The answer is 6.0", "6", {}, True),
    ("It costs $1,234.50 in total.", "1234.5", {}, True),
    ("The result is -42.", "-42", {}, True),
    ("That is 16.", "6", {}, False),
    ("3.14159", "3.14", {"tolerance": 0.01}, True),
    ("3.2", "3.14", {"tolerance": 0.01}, False),
    ("1030", "1000", {"rel_tolerance": 0.05}, True),
    ("About 45% of people.", "0.45", {}, True),
    ("A share of 0.45.", "45%", {}, True),
    ("First 7, then 12.", "7", {}, False),  # the last number is the answer by default
    ("First 7, then 12.", "7", {"pick": "first"}, True),
    ("Either 7 or 12.", "12", {"pick": "any"}, True),
    ("Either 7 or 12.", "12", {"pick": "only"}, False),
])
def test_numeric(output: str, ideal: str, options: dict[str, Any], passed: bool) -> None:
    result = run(output, case("numeric", [ideal], **options))
    assert result.passed is passed, result.reason


def test_numeric_without_a_number_fails_and_says_why() -> None:
    result = run("I am not certain about this one.", case("numeric", ["6"]))
    assert result.passed is False
    assert "no number" in result.reason


@pytest.mark.parametrize(("options", "ideal", "field"), [
    ({}, ["six"], "ideal"),
    ({"tolerance": -1}, ["6"], "assertion.tolerance"),
    ({"tolerance": "small"}, ["6"], "assertion.tolerance"),
    ({"pick": "middle"}, ["6"], "assertion.pick"),
])
def test_numeric_bad_setup_is_a_load_problem(options: dict[str, Any], ideal: list[str],
                                             field: str) -> None:
    fields = [f for f, _ in validate_assertion(case("numeric", ideal, **options))]
    assert any(f.startswith(field) for f in fields), fields
