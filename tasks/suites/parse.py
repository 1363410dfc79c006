"""Parsing suite files: ``suite.toml`` metadata and defaults, and ``cases.jsonl`` lines.

Every problem is appended to a list with its file, line and field; the loader raises them all at
once. Assertion options are checked by a validator the caller passes in (the scorer registry's).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.errors import SuiteProblem
from tasks.suites.images import MAX_IMAGE_BYTES, resolve_content
from tasks.suites.model import Case, SuiteDefaults

# Checks a case's assertion options; returns (field, message) pairs for each problem.
AssertionValidator = Callable[[Case], list[tuple[str, str]]]

_META_KEYS = {"name": "a non-empty string", "version": "a non-empty string",
              "description": "a string", "tier": "a string", "cases": "a file name",
              "defaults": "a table", "metadata": "a table"}


def toml_line(path: Path, key: str) -> int | None:
    """The line of ``key = ...`` in a TOML file (``table.key`` looks inside ``[table]``)."""
    table, _, name = key.rpartition(".")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    current = ""
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.strip("[] ")
            if current == key:
                return lineno
            continue
        if current == table and re.match(rf"\s*\"?{re.escape(name)}\"?\s*=", line):
            return lineno
    return None


def check_meta(meta: dict[str, Any], path: Path, problems: list[SuiteProblem]) -> None:
    if not path.is_file() or (not meta and problems):
        return
    for key in meta:
        if key not in _META_KEYS:
            problems.append(SuiteProblem(
                path, f"unknown setting (allowed: {', '.join(sorted(_META_KEYS))})",
                line=toml_line(path, key), field=key))
    for key in ("name", "version"):
        if key not in meta:
            problems.append(SuiteProblem(path, "required", field=key))
    for key, want in _META_KEYS.items():
        if key not in meta:
            continue
        value = meta[key]
        ok = isinstance(value, dict) if want == "a table" else (
            isinstance(value, str) and (bool(value.strip()) or want == "a string"))
        if key == "name" and ok and not re.fullmatch(r"[A-Za-z0-9][\w.-]*", value):
            problems.append(SuiteProblem(path, "letters, digits, '.', '_' and '-' only",
                                         line=toml_line(path, key), field=key))
        if not ok:
            problems.append(SuiteProblem(path, f"must be {want}", line=toml_line(path, key),
                                         field=key))


def read_toml(path: Path, problems: list[SuiteProblem]) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(SuiteProblem(path, "file not found"))
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "(at line 3, column 7)"; lift the line into the location.
        m = re.search(r"at line (\d+)", str(exc))
        problems.append(SuiteProblem(path, f"invalid TOML: {exc}",
                                     line=int(m[1]) if m else None))
    return {}


def read_defaults(raw: Any, path: Path, problems: list[SuiteProblem]) -> SuiteDefaults:
    if not isinstance(raw, dict):
        problems.append(SuiteProblem(path, "must be a table", field="defaults"))
        return SuiteDefaults()
    allowed = set(SuiteDefaults.__dataclass_fields__)
    for key in raw:
        if key not in allowed:
            problems.append(
                SuiteProblem(path, f"unknown setting (allowed: {', '.join(sorted(allowed))})",
                             line=toml_line(path, f"defaults.{key}"), field=f"defaults.{key}")
            )
    try:
        values = {k: v for k, v in raw.items() if k in allowed}
        d = SuiteDefaults(**values)
    except TypeError as exc:
        problems.append(SuiteProblem(path, str(exc), field="defaults"))
        return SuiteDefaults()
    checks = [
        ("samples", isinstance(d.samples, int) and d.samples >= 1, "an integer >= 1"),
        ("temperature", isinstance(d.temperature, int | float) and 0 <= d.temperature <= 2,
         "a number from 0 to 2"),
        ("max_tokens", isinstance(d.max_tokens, int) and d.max_tokens >= 1, "an integer >= 1"),
        ("seed", d.seed is None or isinstance(d.seed, int), "an integer"),
        ("system_prompt", d.system_prompt is None or isinstance(d.system_prompt, str), "a string"),
    ]
    for name, ok, want in checks:
        # bool is an int to Python, never to a suite author.
        value = getattr(d, name)
        if not ok or (isinstance(value, bool) and name != "system_prompt"):
            problems.append(SuiteProblem(path, f"must be {want}",
                                         line=toml_line(path, f"defaults.{name}"),
                                         field=f"defaults.{name}"))
    return d


def read_cases(
    path: Path, problems: list[SuiteProblem], validate: AssertionValidator, *,
    root: Path | None = None, max_image_bytes: int = MAX_IMAGE_BYTES,
) -> list[Case]:
    """Parse a cases JSONL file, appending a located problem for each bad line or field.

    Image paths are relative to ``root``, the suite folder (default: the file's folder), and
    may not leave it; each image is read, typed by its bytes and held to ``max_image_bytes``.
    """
    root = path.parent if root is None else root

    cases: list[Case] = []
    seen: dict[str, int] = {}
    try:
        # utf-8-sig: a byte-order mark from a Windows editor is not part of line 1's JSON.
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        problems.append(SuiteProblem(path, "file not found"))
        return cases
    except UnicodeDecodeError as exc:
        problems.append(SuiteProblem(path, f"not UTF-8 text: {exc}"))
        return cases
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(SuiteProblem(path, f"invalid JSON: {exc.msg} (column {exc.colno})",
                                         line=lineno))
            continue
        if not isinstance(raw, dict):
            problems.append(SuiteProblem(path, "a case must be a JSON object", line=lineno))
            continue
        case = _case(raw, path, lineno, problems, root, max_image_bytes)
        if case is None:
            continue
        if case.id in seen:
            problems.append(SuiteProblem(
                path, f"duplicate id {case.id!r} (first on line {seen[case.id]})",
                line=lineno, field="id"))
            continue
        seen[case.id] = lineno
        for field_name, message in validate(case):
            problems.append(SuiteProblem(path, message, line=lineno, field=field_name))
        cases.append(case)
    return cases


_KNOWN_FIELDS = {"id", "category", "input", "ideal", "assertion", "metadata"}


def _case(raw: dict[str, Any], path: Path, line: int, problems: list[SuiteProblem],
          root: Path, max_image_bytes: int) -> Case | None:
    before = len(problems)

    def bad(field_name: str, message: str) -> None:
        problems.append(SuiteProblem(path, message, line=line, field=field_name))

    for key in raw:
        if key not in _KNOWN_FIELDS:
            bad(key, f"unknown field (allowed: {', '.join(sorted(_KNOWN_FIELDS))})")
    case_id = raw.get("id")
    if not isinstance(case_id, str) or not case_id.strip():
        bad("id", "required, a non-empty string")
    elif len(case_id) > 200:
        bad("id", "longer than 200 characters")
    inp = raw.get("input")
    if isinstance(inp, str):
        if not inp.strip():
            bad("input", "must not be empty")
    elif isinstance(inp, list) and inp:
        inp = list(inp)
        for i, msg in enumerate(inp):
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, list) and msg.get("role") == "user":
                if not content:
                    bad(f"input[{i}].content", "must not be an empty list of parts")
                    continue
                # Images are read here, once: a run never touches the suite folder again.
                parts, found = resolve_content(content, root, f"input[{i}].content",
                                               max_image_bytes)
                for field_name, message in found:
                    bad(field_name, message)
                inp[i] = {**msg, "content": parts}
            elif isinstance(content, list) and isinstance(msg, dict) and msg.get("role") in (
                    "system", "assistant"):
                bad(f"input[{i}].content", "content parts (text and images) are allowed in "
                    "user messages only; this message's content must be a string")
            elif not (
                isinstance(msg, dict)
                and msg.get("role") in ("system", "user", "assistant")
                and isinstance(content, str)
            ):
                bad(f"input[{i}]", "must be {\"role\": system|user|assistant, \"content\": "
                    "str} (a user message's content may also be a list of text and image parts)")
    else:
        bad("input", "required, a string or a non-empty list of chat messages")
    ideal = raw.get("ideal")
    if not (ideal is None or isinstance(ideal, str)
            or (isinstance(ideal, list) and all(isinstance(x, str) for x in ideal))):
        bad("ideal", "must be a string, a list of strings, or null")
    assertion = raw.get("assertion")
    if not isinstance(assertion, dict) or not isinstance(assertion.get("type"), str):
        bad("assertion", "required, an object with a string \"type\"")
    category = raw.get("category")
    if category is not None and not isinstance(category, str):
        bad("category", "must be a string")
    metadata = raw.get("metadata", {})
    if not isinstance(metadata, dict):
        bad("metadata", "must be an object")
    if len(problems) > before:
        return None
    return Case(
        id=case_id,  # type: ignore[arg-type]
        input=inp,  # type: ignore[arg-type]
        assertion=assertion,  # type: ignore[arg-type]
        ideal=ideal,
        category=category,
        metadata=metadata or {},
    )
