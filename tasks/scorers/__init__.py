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

# Importing the modules registers their scorers. Heavy dependencies (the embedding model, a
# judge's provider SDK) are imported only when a scorer first runs.
from tasks.scorers import text as _text  # noqa: F401  isort: skip
from tasks.scorers import structured as _structured  # noqa: F401  isort: skip
from tasks.scorers import code as _code  # noqa: F401  isort: skip
from tasks.scorers import judge as _judge  # noqa: F401  isort: skip
from tasks.scorers import semantic as _semantic  # noqa: F401  isort: skip
from tasks.scorers import refusal as _refusal  # noqa: F401  isort: skip

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
