"""Prompt suites as data: ``suites/<name>/suite.toml`` + ``cases.jsonl``, loaded and validated.

A case line is the Pramana/OpenAI-evals shape, so existing suites load unchanged. Every problem
found is reported with its file, line and field, and a suite with any problem is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import SuiteError, SuiteProblem

SHIPPED_SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"

Message = dict[str, str]


@dataclass(frozen=True)
class SuiteDefaults:
    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 42
    system_prompt: str | None = None


@dataclass(frozen=True)
class Case:
    id: str
    input: str | list[Message]
    assertion: dict[str, Any]
    ideal: str | list[str] | None = None
    category: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def assertion_type(self) -> str:
        return str(self.assertion.get("type", ""))

    @property
    def ideals(self) -> list[str]:
        """The ideal answers as a list (empty when the case has none)."""
        if self.ideal is None:
            return []
        return [self.ideal] if isinstance(self.ideal, str) else list(self.ideal)

    def messages(self, system_prompt: str | None = None) -> list[Message]:
        """The case input as chat messages, with an optional system prompt first."""
        msgs: list[Message] = []
        if system_prompt and not (
            isinstance(self.input, list) and self.input and self.input[0].get("role") == "system"
        ):
            msgs.append({"role": "system", "content": system_prompt})
        if isinstance(self.input, str):
            msgs.append({"role": "user", "content": self.input})
        else:
            msgs.extend(dict(m) for m in self.input)
        return msgs

    def canonical(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "input": self.input,
            "ideal": self.ideal,
            "assertion": self.assertion,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    tier: str | None
    defaults: SuiteDefaults
    cases: tuple[Case, ...]
    path: Path

    @property
    def hash(self) -> str:
        """``sha256:`` over the canonical JSON of the cases sorted by id."""
        return suite_hash(self.cases)


def suite_hash(cases: tuple[Case, ...] | list[Case]) -> str:
    canon = [c.canonical() for c in sorted(cases, key=lambda c: c.id)]
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def suite_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Folders searched for suites by name: the shipped suites, then any extra folders."""
    return [SHIPPED_SUITES_DIR, *(extra or [])]


def list_suites(extra: list[Path] | None = None) -> list[Path]:
    """Every suite folder (one with a ``suite.toml`` or ``manifest.toml``) found by name."""
    found: list[Path] = []
    for root in suite_dirs(extra):
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if (child / "suite.toml").is_file() or (child / "manifest.toml").is_file():
                found.append(child)
    return found


def resolve_suite(name_or_path: str | Path, extra: list[Path] | None = None) -> Path:
    """A suite folder from a path or a shipped suite's name; a clear error if neither exists."""
    path = Path(name_or_path)
    if path.is_dir() or path.name in ("suite.toml", "manifest.toml"):
        return path if path.is_dir() else path.parent
    for root in suite_dirs(extra):
        candidate = root / str(name_or_path)
        if (candidate / "suite.toml").is_file() or (candidate / "manifest.toml").is_file():
            return candidate
    known = ", ".join(p.name for p in list_suites(extra)) or "none"
    raise SuiteError(
        [SuiteProblem(str(name_or_path), f"no such suite (known suites: {known})")]
    )


def _split_tier(name_or_path: str | Path) -> tuple[str | Path, str | None]:
    """``"pramana-dir:cheap"`` names one tier of a Pramana directory; anything else is as given."""
    text = str(name_or_path)
    head, sep, tier = text.rpartition(":")
    if sep and head and tier and not Path(text).exists() and "/" not in tier:
        folder = Path(head)
        if (folder / "manifest.toml").is_file():
            return folder, tier
    return name_or_path, None


def load_suite(
    name_or_path: str | Path, extra: list[Path] | None = None, *, tier: str | None = None
) -> Suite:
    """Load and validate a suite; raise ``SuiteError`` listing every problem found.

    ``name_or_path`` is a shipped suite's name, a suite folder, or a Pramana directory (a
    ``manifest.toml`` with ``[tiers.*]``); ``tier`` (or ``"dir:tier"``) picks one Pramana tier.
    """
    name_or_path, named_tier = _split_tier(name_or_path)
    tier = tier or named_tier
    folder = resolve_suite(name_or_path, extra)
    problems: list[SuiteProblem] = []
    suite_toml = folder / "suite.toml"
    if not suite_toml.is_file():
        if not (folder / "manifest.toml").is_file():
            raise SuiteError([SuiteProblem(folder, "not a suite folder: it has neither "
                                           "suite.toml nor a Pramana manifest.toml")])
        from tasks.suites_pramana import load_pramana_dir

        return load_pramana_dir(folder, tier)
    meta = _read_toml(suite_toml, problems)
    _check_meta(meta, suite_toml, problems)
    defaults = _defaults(meta.get("defaults", {}), suite_toml, problems)
    cases_name = meta.get("cases", "cases.jsonl")
    cases_file = folder / (cases_name if isinstance(cases_name, str) else "cases.jsonl")
    cases = read_cases(cases_file, problems)
    if not cases and not problems:
        problems.append(SuiteProblem(cases_file, "suite has no cases"))
    if problems:
        raise SuiteError(problems)
    return Suite(
        name=str(meta["name"]),
        version=str(meta["version"]),
        description=str(meta.get("description", "")),
        tier=meta.get("tier"),
        defaults=defaults,
        cases=tuple(cases),
        path=folder,
    )


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


def _check_meta(meta: dict[str, Any], path: Path, problems: list[SuiteProblem]) -> None:
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


def _read_toml(path: Path, problems: list[SuiteProblem]) -> dict[str, Any]:
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


def _defaults(raw: Any, path: Path, problems: list[SuiteProblem]) -> SuiteDefaults:
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


def read_cases(path: Path, problems: list[SuiteProblem]) -> list[Case]:
    """Parse a cases JSONL file, appending a located problem for each bad line or field."""
    from tasks.scorers import validate_assertion

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
        case = _case(raw, path, lineno, problems)
        if case is None:
            continue
        if case.id in seen:
            problems.append(SuiteProblem(
                path, f"duplicate id {case.id!r} (first on line {seen[case.id]})",
                line=lineno, field="id"))
            continue
        seen[case.id] = lineno
        for field_name, message in validate_assertion(case):
            problems.append(SuiteProblem(path, message, line=lineno, field=field_name))
        cases.append(case)
    return cases


_KNOWN_FIELDS = {"id", "category", "input", "ideal", "assertion", "metadata"}


def _case(raw: dict[str, Any], path: Path, line: int, problems: list[SuiteProblem]) -> Case | None:
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
        for i, msg in enumerate(inp):
            if not (
                isinstance(msg, dict)
                and msg.get("role") in ("system", "user", "assistant")
                and isinstance(msg.get("content"), str)
            ):
                bad(f"input[{i}]", "must be {\"role\": system|user|assistant, \"content\": str}")
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
