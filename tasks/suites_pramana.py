"""Loading a Pramana-style suite directory unchanged: ``manifest.toml`` with ``[tiers.<name>]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.errors import SuiteError, SuiteProblem
from tasks.suites import Case, Suite, SuiteDefaults, _read_toml, read_cases


def load_pramana_dir(folder: Path, tier: str | None = None) -> Suite:
    """A suite from a Pramana manifest; all tiers' cases unless ``tier`` names one.

    ``folder`` may also be ``<dir>:<tier>`` style resolved by the caller; each tier entry names
    its JSONL file with ``file`` (or ``path``).
    """
    manifest = folder / "manifest.toml"
    problems: list[SuiteProblem] = []
    meta = _read_toml(manifest, problems)
    tiers: dict[str, Any] = meta.get("tiers", {}) if isinstance(meta.get("tiers"), dict) else {}
    if not tiers and not problems:
        problems.append(SuiteProblem(manifest, "no [tiers.<name>] entries", field="tiers"))
    chosen = {tier: tiers[tier]} if tier and tier in tiers else tiers
    if tier and tier not in tiers:
        problems.append(SuiteProblem(manifest, f"no tier {tier!r}", field="tiers"))
    cases: list[Case] = []
    for name, entry in chosen.items():
        rel = entry.get("file") or entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(rel, str):
            problems.append(SuiteProblem(manifest, "needs a file = \"...jsonl\"",
                                         field=f"tiers.{name}.file"))
            continue
        cases.extend(read_cases(folder / rel, problems))
    ids: dict[str, int] = {}
    for c in cases:
        ids[c.id] = ids.get(c.id, 0) + 1
    for case_id, count in ids.items():
        if count > 1:
            problems.append(SuiteProblem(manifest, f"case id {case_id!r} appears in {count} tiers"))
    if problems:
        raise SuiteError(problems)
    suite_meta = meta.get("suite", meta)
    return Suite(
        name=str(suite_meta.get("name", folder.name)),
        version=str(suite_meta.get("version", "0")),
        description=str(suite_meta.get("description", "")),
        tier=tier,
        defaults=SuiteDefaults(),
        cases=tuple(cases),
        path=folder,
    )
