"""Prompt suites as data: ``suites/<name>/suite.toml`` + ``cases.jsonl``, loaded and validated.

A case line is the Pramana/OpenAI-evals shape, so existing suites load unchanged. Every problem
found is reported with its file, line and field, and a suite with any problem is refused.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import SuiteError, SuiteProblem
from tasks.suites.model import Suite
from tasks.suites.parse import (
    AssertionValidator,
    check_meta,
    read_cases,
    read_defaults,
    read_toml,
)
from tasks.suites.pramana import load_pramana_dir

SHIPPED_SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"


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
    name_or_path: str | Path,
    extra: list[Path] | None = None,
    *,
    tier: str | None = None,
    validate: AssertionValidator,
) -> Suite:
    """Load and validate a suite; raise ``SuiteError`` listing every problem found.

    ``name_or_path`` is a shipped suite's name, a suite folder, or a Pramana directory (a
    ``manifest.toml`` with ``[tiers.*]``); ``tier`` (or ``"dir:tier"``) picks one Pramana tier.
    ``validate`` checks each case's assertion options (the scorer registry's
    ``validate_assertion``; ``tasks.catalog.load_suite`` passes it in).
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
        return load_pramana_dir(folder, tier, validate)
    meta = read_toml(suite_toml, problems)
    check_meta(meta, suite_toml, problems)
    defaults = read_defaults(meta.get("defaults", {}), suite_toml, problems)
    cases_name = meta.get("cases", "cases.jsonl")
    cases_file = folder / (cases_name if isinstance(cases_name, str) else "cases.jsonl")
    # Image paths are relative to the suite folder, wherever `cases` puts the file.
    cases = read_cases(cases_file, problems, validate, root=folder)
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


