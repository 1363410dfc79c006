"""``plumbline suites list`` and ``validate``: the shipped prompt suites, and checking suite
folders before a run does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from cyclopts import App, Parameter

from flows.cli.tables import print_table

DESCRIPTION_WIDTH = 60

app = App(
    name="suites",
    help="List and validate prompt suites.\n\nList the shipped suites or validate suite folders.",
)


@app.command(name="list")
def list_suites() -> int:
    """List the shipped suites with case counts and hashes.

    List the shipped suites: name, version, number of cases, categories and scorers, tier and
    suite hash. Exit 1 if any is invalid.
    """
    from tasks.catalog import load_suite
    from tasks.errors import PlumblineError, SuiteError
    from tasks.suites.load import list_suites as suite_paths

    rows = []
    invalid = 0
    for path in suite_paths():
        try:
            s = load_suite(path)
        except PlumblineError as exc:
            invalid += 1
            count = len(exc.problems) if isinstance(exc, SuiteError) else 1
            rows.append({"name": path.name, "version": "INVALID", "cases": None, "tier": None,
                         "hash": f"{count} problem(s)", "description": f"plumbline suites "
                         f"validate {path}"})
            continue
        types = sorted({c.assertion_type for c in s.cases})
        description = s.description
        if len(description) > DESCRIPTION_WIDTH:
            description = description[: DESCRIPTION_WIDTH - 1] + "…"
        rows.append({"name": s.name, "version": s.version, "cases": len(s.cases),
                     "categories": len({c.category for c in s.cases}),
                     "scorers": len(types), "tier": s.tier, "hash": s.hash[:19],
                     "description": description})
    print_table(rows, ["name", "version", "cases", "categories", "scorers", "tier", "hash",
                       "description"])
    if invalid:
        print(f"\n{invalid} suite(s) invalid: run `plumbline suites validate NAME` for the "
              "file, line and field of each problem", file=sys.stderr)
    return 1 if invalid else 0


@app.command
def validate(
    paths: Annotated[
        list[Path],
        Parameter(name="PATHS", help="Suite folders, shipped suite names, or a Pramana "
                  "directory (optionally :tier)."),
    ],
    /,
) -> int:
    """Validate suite folders; exit 1 on any problem.

    Load each suite and report every problem found (file, line, field); exit 1 if any suite is
    invalid.
    """
    from collections import Counter

    from tasks.catalog import load_suite
    from tasks.errors import PlumblineError, SuiteError

    failed = 0
    for target in paths:
        try:
            s = load_suite(target)
        except SuiteError as exc:
            failed += 1
            noun = "problem" if len(exc.problems) == 1 else "problems"
            print(f"{target}: INVALID, {len(exc.problems)} {noun}:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            continue
        except PlumblineError as exc:
            failed += 1
            print(f"{target}: INVALID\n  {exc}", file=sys.stderr)
            continue
        cats = Counter(c.category or "-" for c in s.cases)
        types = Counter(c.assertion_type for c in s.cases)
        print(f"{target}: ok: {s.name} {s.version}, {len(s.cases)} cases, {s.hash}")
        print("  categories: " + ", ".join(f"{k} {v}" for k, v in sorted(cats.items())))
        print("  assertions: " + ", ".join(f"{k} {v}" for k, v in sorted(types.items())))
    if len(paths) > 1:
        print(f"{len(paths) - failed} valid, {failed} invalid")
    return 1 if failed else 0
