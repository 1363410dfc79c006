"""The ``semantic_similarity`` scorer: cosine similarity of local sentence embeddings.

The model (all-MiniLM-L6-v2, loaded offline by ``tasks.embeddings``, which the nightly's
meaning-drift metric shares) comes with the optional ``embeddings`` extra. Without the extra the
scorer skips with the install command instead of guessing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tasks import embeddings
from tasks.scorers.base import ScoreContext, ScoreResult, check_threshold, scorer
from tasks.suites.model import Case

MODEL_PACKAGE = embeddings.MODEL_PACKAGE
DEFAULT_THRESHOLD = 0.75
INSTALL_HINT = f"semantic_similarity {embeddings.INSTALL_HINT}"


def embeddings_available() -> bool:
    return embeddings.available(MODEL_PACKAGE)


def similarities(text: str, references: list[str]) -> list[float]:
    """Cosine similarity of ``text`` with each reference, in [-1, 1]."""
    vectors = embeddings.encode([text, *references])
    return [float(vectors[0] @ v) for v in vectors[1:]]


@scorer(
    "semantic_similarity",
    description="Cosine similarity between the output and the closest ideal, using a local "
    "embedding model (all-MiniLM-L6-v2, the `embeddings` extra; no network). Score is the "
    "similarity clipped to [0, 1]; passes at `threshold` (default 0.75). Skipped when the extra "
    "is not installed.",
    needs_ideal=True,
    options=("threshold",),
    check=lambda case, opts: check_threshold(opts),
)
async def semantic_similarity(
    output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext
) -> ScoreResult:
    if not embeddings_available():
        return ScoreResult.skip(INSTALL_HINT)
    if not output.strip():
        return ScoreResult.ok(False, "empty output", 0.0)
    threshold = float(opts.get("threshold", DEFAULT_THRESHOLD))
    sims = await asyncio.to_thread(similarities, output, case.ideals)
    best = max(range(len(sims)), key=sims.__getitem__)
    value = min(1.0, max(0.0, sims[best]))
    ideal = case.ideals[best]
    shown = ideal if len(ideal) <= 60 else ideal[:59] + "…"
    return ScoreResult.ok(value >= threshold,
                          f"similarity {value:.3f} to {shown!r} (threshold {threshold:g})", value)
