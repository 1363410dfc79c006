"""The suite loader wired to the scorer registry: what flows, the CLI and tests call.

``tasks.suites`` knows nothing of scorers (scorers import ``tasks.suites.model``), so the check of
each case's assertion options is passed in here, where both are known.
"""

from __future__ import annotations

from pathlib import Path

from tasks.scorers import validate_assertion
from tasks.suites import load
from tasks.suites.model import Suite


def load_suite(
    name_or_path: str | Path, extra: list[Path] | None = None, *, tier: str | None = None
) -> Suite:
    """Load a suite by name or path and validate it, assertion options included.

    Raises ``SuiteError`` listing every problem found, each with its file, line and field.
    """
    return load.load_suite(name_or_path, extra, tier=tier, validate=validate_assertion)
