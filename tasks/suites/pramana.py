"""Loading a Pramana-style suite directory unchanged: ``manifest.toml`` with ``[tiers.<name>]``.

Pramana ships one directory per suite version: a manifest whose ``[suite]`` table carries the
version and description, and one ``[tiers.<name>]`` table per tier naming its JSONL file
(``file``) with informational keys (``test_count``, ``estimated_cost_usd``, ...). The case lines
are the same shape as ours, so they go through the same validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.errors import SuiteError, SuiteProblem
from tasks.suites.model import Case, Suite, SuiteDefaults
from tasks.suites.parse import AssertionValidator, read_cases, read_toml, toml_line


def load_pramana_dir(
    folder: Path, tier: str | None, validate: AssertionValidator
) -> Suite:
    """A suite from a Pramana manifest: every tier's cases, or only ``tier``'s.

    Loading one tier gives the suite the name ``<folder>:<tier>`` so its hash and results are
    never mixed up with the whole directory's.
    """
    manifest = folder / "manifest.toml"
    problems: list[SuiteProblem] = []
    meta = read_toml(manifest, problems)
    raw_tiers = meta.get("tiers", {})
    tiers: dict[str, Any] = raw_tiers if isinstance(raw_tiers, dict) else {}
    if not tiers and not problems:
        problems.append(SuiteProblem(manifest, "no [tiers.<name>] entries", field="tiers"))
    if tier is not None and tier not in tiers and tiers:
        problems.append(SuiteProblem(
            manifest, f"no tier {tier!r} (tiers: {', '.join(sorted(tiers))})", field="tiers"))
    chosen = {tier: tiers[tier]} if tier in tiers else tiers
    cases: list[Case] = []
    first_seen: dict[str, tuple[Case, str]] = {}
    for name, entry in chosen.items():
        rel = (entry.get("file") or entry.get("path")) if isinstance(entry, dict) else None
        if not isinstance(rel, str):
            problems.append(SuiteProblem(manifest, "needs file = \"<name>.jsonl\"",
                                         line=toml_line(manifest, f"tiers.{name}"),
                                         field=f"tiers.{name}.file"))
            continue
        path = folder / rel
        tier_cases = read_cases(path, problems, validate, root=folder)
        expected = entry.get("test_count")
        if isinstance(expected, int) and path.is_file() and expected != len(tier_cases):
            problems.append(SuiteProblem(
                manifest, f"says {expected} cases but {rel} has {len(tier_cases)}",
                line=toml_line(manifest, f"tiers.{name}.test_count"),
                field=f"tiers.{name}.test_count"))
        for case in tier_cases:
            seen = first_seen.get(case.id)
            if seen is None:
                first_seen[case.id] = (case, name)
                cases.append(case)
            elif seen[0].canonical() != case.canonical():
                # The same case repeated in a larger tier is fine; two different ones are not.
                problems.append(SuiteProblem(
                    path, f"case id {case.id!r} is also in tier {seen[1]!r} with other content",
                    field="id"))
    if not cases and not problems:
        problems.append(SuiteProblem(manifest, "the tiers hold no cases", field="tiers"))
    if problems:
        raise SuiteError(problems)
    suite_meta = meta.get("suite") if isinstance(meta.get("suite"), dict) else meta
    tier_meta = chosen.get(tier, {}) if tier else {}
    description = tier_meta.get("description") or suite_meta.get("description", "")
    return Suite(
        name=f"{folder.name}:{tier}" if tier else str(suite_meta.get("name", folder.name)),
        version=str(suite_meta.get("version", "0")),
        description=str(description),
        tier=tier,
        defaults=SuiteDefaults(),
        cases=tuple(cases),
        path=folder,
    )
