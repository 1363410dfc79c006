"""Structured-answer scorers: is_json, json_schema, numeric.

JSON may arrive bare or in a Markdown fence (```json ... ```); numbers may arrive in prose
("roughly 1,250 km", "-3.5", "45%"). What counts as the answer is decided in
``tasks.scorers.extract`` so every scorer agrees.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from tasks.scorers.base import ScoreContext, ScoreResult, check_bool, check_number, scorer
from tasks.scorers.extract import Number, fenced_candidates, numbers_in, parse_number
from tasks.suites.model import Case

_MISSING = object()


def _load_json(output: str, allow_fenced: bool) -> tuple[Any, str]:
    """The JSON value in ``output`` and where it was found; ``_MISSING`` and the error if none."""
    text = output.strip()
    try:
        return json.loads(text), "the whole output"
    except json.JSONDecodeError as exc:
        first_error = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if allow_fenced:
        for body in fenced_candidates(output, ("json", "jsonc", "javascript", "js")):
            try:
                return json.loads(body), "a fenced code block"
            except json.JSONDecodeError:
                continue
    return _MISSING, first_error


_JSON_KINDS = {"object": dict, "array": list}


@scorer(
    "is_json",
    description="Output is valid JSON, bare or in a ```json fenced block (allow_fenced=false "
    "requires bare JSON); `kind` = object|array requires that top-level type.",
    options=("allow_fenced", "kind"),
    check=lambda case, opts: check_bool(opts, "allow_fenced") + (
        [("assertion.kind", "must be \"object\" or \"array\"")]
        if "kind" in opts and opts["kind"] not in _JSON_KINDS else []
    ),
)
def is_json(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    value, where = _load_json(output, bool(opts.get("allow_fenced", True)))
    if value is _MISSING:
        return ScoreResult.ok(False, f"output is not JSON ({where})")
    kind = opts.get("kind")
    if kind and not isinstance(value, _JSON_KINDS[kind]):
        return ScoreResult.ok(False, f"JSON in {where} is a {type(value).__name__}, not an {kind}")
    return ScoreResult.ok(True, f"valid JSON in {where}")


def _schema_check(case: Case, opts: dict[str, Any]) -> list[tuple[str, str]]:
    problems = check_bool(opts, "allow_fenced")
    schema = opts.get("schema")
    if not isinstance(schema, dict):
        return [*problems, ("assertion.schema", "required, a JSON Schema object")]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "".join(f"[{p!r}]" for p in exc.absolute_path)
        problems.append((f"assertion.schema{path}", f"not a valid JSON Schema: {exc.message}"))
    return problems


@scorer(
    "json_schema",
    description="Output is JSON (bare or fenced) that validates against the JSON Schema "
    "(draft 2020-12) in `schema`; the reason names the first violation.",
    options=("schema", "allow_fenced"),
    check=_schema_check,
)
def json_schema(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    schema = opts.get("schema")
    if not isinstance(schema, dict):
        return ScoreResult.skip("json_schema needs a `schema` object")
    value, where = _load_json(output, bool(opts.get("allow_fenced", True)))
    if value is _MISSING:
        return ScoreResult.ok(False, f"output is not JSON ({where})")
    errors = sorted(Draft202012Validator(schema).iter_errors(value),
                    key=lambda e: list(e.absolute_path))
    if not errors:
        return ScoreResult.ok(True, f"JSON in {where} matches the schema")
    first = errors[0]
    at = "/" + "/".join(str(p) for p in first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ScoreResult.ok(False, f"JSON at {at}: {first.message}{more}")


_PICKS = ("last", "first", "any", "only")


def _numeric_check(case: Case, opts: dict[str, Any]) -> list[tuple[str, str]]:
    problems = check_number(opts, "tolerance", low=0.0) + check_number(
        opts, "rel_tolerance", low=0.0)
    if "pick" in opts and opts["pick"] not in _PICKS:
        problems.append(("assertion.pick", f"must be one of {', '.join(_PICKS)}"))
    for i, ideal in enumerate(case.ideals):
        if parse_number(ideal) is None:
            problems.append((f"ideal[{i}]" if isinstance(case.ideal, list) else "ideal",
                             f"{ideal!r} is not a single number"))
    return problems


def _close(got: float, want: float, abs_tol: float, rel_tol: float) -> bool:
    return math.isclose(got, want, abs_tol=max(abs_tol, 1e-9), rel_tol=rel_tol)


def _matches(got: Number, want: Number, abs_tol: float, rel_tol: float) -> bool:
    if _close(got.value, want.value, abs_tol, rel_tol):
        return True
    # "45%" answers "0.45" and the other way round; a plain 45 for "45%" already matched above.
    if got.percent and not want.percent:
        return _close(got.value / 100, want.value, abs_tol, rel_tol)
    if want.percent and not got.percent:
        return _close(got.value * 100, want.value, abs_tol, rel_tol)
    return False


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e15 else f"{x:.6e}"


@scorer(
    "numeric",
    description="The number in the output equals an ideal number within `tolerance` (absolute) "
    "or `rel_tolerance` (relative). The number is read from prose (commas, negatives, "
    "decimals, percentages); `pick` = last (default) | first | any | only says which one.",
    needs_ideal=True,
    options=("tolerance", "rel_tolerance", "pick"),
    check=_numeric_check,
)
def numeric(output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext) -> ScoreResult:
    wants = [n for n in (parse_number(i) for i in case.ideals) if n is not None]
    if not wants:
        return ScoreResult.skip(f"no ideal is a number: {case.ideals!r}")
    abs_tol = float(opts.get("tolerance", 0.0))
    rel_tol = float(opts.get("rel_tolerance", 0.0))
    pick = opts.get("pick", "last")
    found = numbers_in(output)
    if not found:
        return ScoreResult.ok(False, "no number in the output")
    if pick == "only" and len({n.value for n in found}) > 1:
        shown = ", ".join(n.text for n in found[:5])
        return ScoreResult.ok(False, f"expected a single number, found several: {shown}")
    candidates = {"last": found[-1:], "first": found[:1]}.get(pick, found)
    tol = f" ± {_fmt(abs_tol)}" if abs_tol else (f" ± {rel_tol:.2%}" if rel_tol else "")
    for got in candidates:
        for want in wants:
            if _matches(got, want, abs_tol, rel_tol):
                return ScoreResult.ok(True, f"found {got.text}, expected {want.text}{tol}")
    which = "the numbers" if pick == "any" else f"the {pick} number"
    shown = ", ".join(n.text for n in candidates[:5])
    expected = " or ".join(w.text for w in wants)
    return ScoreResult.ok(False, f"{which} in the output ({shown}) is not {expected}{tol}")
