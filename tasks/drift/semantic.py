"""Meaning drift: how far a prompt's recent answers moved from what its answers meant before.

The drift stage never embeds text (it imports nothing above it); the summaries stage does, and
hands it numbers through the kernels here. Per prompt and day the input is the sum of the unit
embedding vectors of that day's distinct outputs and their count. A day's **distance** is one
minus the mean cosine similarity of its outputs to the prompt's baseline centroid (the direction
of the sum of the baseline days' vectors):

- a recent day is compared with the centroid of all baseline days;
- a baseline day is compared with the centroid of the *other* baseline days (leave one out), so
  that under no change a baseline day's distance and a recent day's distance are out-of-sample
  alike (exchangeable, up to one day fewer in the centroid): the baseline's own day-to-day
  distances are the null distribution the recent days are tested against.

``metrics.semantic_tests`` then compares the recent days' distances with the baseline days' by
Mann–Whitney U per prompt, and per suite and model on the days' means of the prompts' centred
distances (docs/drift.md, "Meaning drift"). At temperature 0.7 the wording changes every day
but the distances stay within the baseline's spread; a change of meaning moves them all up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

# The columns of the frame the summaries stage hands the drift stage: one row per prompt and day.
DISTANCE_SCHEMA = {"evidence": pl.String, "model_id": pl.String, "suite": pl.String,
                   "prompt_id": pl.String, "date": pl.Date, "outputs": pl.Int64,
                   "distance": pl.Float64}


@dataclass
class SemanticInput:
    """What the drift stage gets for the ``semantic`` metric: the prompt-day distances, or why
    there are none (``skipped``: the embeddings extra is missing, or the step failed)."""

    distances: pl.DataFrame | None
    skipped: str | None = None
    encoder: str | None = None
    embedded: int = 0  # outputs embedded this night (the rest came from the cache)
    reused: int = 0  # outputs whose vectors came from the cache


def sum_by_group(group: np.ndarray, vectors: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group, the sum of its rows' vectors, as float64: one sparse (group × row) indicator
    product. Integer vectors (the cache's quantised form) are summed in float32, exactly: their
    sums stay far below 2**24."""
    if group.size == 0:
        return np.zeros((n_groups, vectors.shape[1]), dtype=np.float64)
    values = vectors.astype(np.float32 if vectors.dtype.kind == "i" else np.float64)
    indicator = sparse.csr_matrix(
        (np.ones(group.size, dtype=values.dtype), (group, np.arange(group.size))),
        shape=(n_groups, group.size))
    return np.asarray(indicator @ values, dtype=np.float64)


def day_distances(
    day_sums: np.ndarray, day_counts: np.ndarray, baseline_total: np.ndarray, leave_out: bool
) -> np.ndarray:
    """Per group (row), one day's distance: 1 − mean cosine similarity of the day's outputs to
    the baseline centroid; ``leave_out`` removes the day's own vectors from the centroid (a
    baseline day). NaN where the day has no outputs or the centroid is empty."""
    centroid = baseline_total - day_sums if leave_out else baseline_total
    norm = np.linalg.norm(centroid, axis=1)
    dot = np.einsum("ij,ij->i", day_sums, centroid)
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = dot / (day_counts * norm)
    ok = (day_counts > 0) & (norm > 1e-9)
    return np.where(ok, 1.0 - np.clip(similarity, -1.0, 1.0), np.nan)
