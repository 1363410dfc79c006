"""Scorers: registered by name, picked by a case's ``assertion.type``.

A scorer returns passed, a score in [0, 1] and a reason. One that cannot decide says so
(``skipped``); it never guesses. ``not-<type>`` negates any scorer that allows it.
"""

from tasks.scorers.base import (
    ScoreContext,
    ScoreResult,
    ScorerSpec,
    get_scorer,
    registered,
    score,
    scorer,
    validate_assertion,
)

# Importing the modules registers their scorers.
from tasks.scorers import text as _text  # noqa: F401  isort: skip

__all__ = [
    "ScoreContext",
    "ScoreResult",
    "ScorerSpec",
    "get_scorer",
    "registered",
    "score",
    "scorer",
    "validate_assertion",
]
