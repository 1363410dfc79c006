"""Which raw rows a night counts, and as which kind of evidence (docs/drift.md, "Evidence").

- **project**: rows of the project's own runs (``source`` scheduled or on-demand), which live under
  ``user=scheduler/``: the API cannot write there (its user ids are 16 hex or ``anonymous``).
  A cell (day, run, model, suite, prompt, sample) counts once even when it was written twice (two
  flow runs sharing one run id, a resume): its success if it has one.
- **community**: rows submitted through the API (``source`` community), under ``user={id}/`` or
  ``user=anonymous/``. Each contributor counts at most ``cap_per_user_day`` rows per model and day
  (the earliest by timestamp, then id), so one contributor cannot outweigh the rest; the
  anonymous partition (unattributed rows: the cap cannot tell their senders apart) counts only
  when the operator allows it, and then as one contributor.

A row whose source and partition disagree is not something Plumbline writes: it is not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from tasks.identity import (
    SOURCE_COMMUNITY,
    SOURCE_ON_DEMAND,
    SOURCE_SCHEDULED,
    USER_ANONYMOUS,
    USER_SCHEDULER,
)
from tasks.settings import Settings
from tasks.storage.layout import user_of_key

PROJECT_SOURCES = (SOURCE_SCHEDULED, SOURCE_ON_DEMAND)
COMMUNITY_SOURCES = (SOURCE_COMMUNITY,)

# A project cell within one day's summary rows. The suite is part of it because summary rows are
# per suite (a run has one suite, so this is the (run, model, prompt, sample) cell of the run).
CELL_KEYS = ["date", "model_id", "suite", "prompt_id", "run_id", "sample_idx"]
# The community cap's unit: one contributor, one model, one day.
CAP_KEYS = ["date", "model_id", "user_id"]

DEFAULT_CAP_PER_USER_DAY = 50


@dataclass(frozen=True)
class EvidenceRules:
    """The operator's rules for community rows (``COMMUNITY_CAP_PER_USER_DAY``,
    ``COMMUNITY_ALLOW_ANONYMOUS``). Changing them re-aggregates every day."""

    cap_per_user_day: int = DEFAULT_CAP_PER_USER_DAY
    allow_anonymous: bool = False

    def __post_init__(self) -> None:
        if self.cap_per_user_day < 0:
            raise ValueError(f"cap_per_user_day must be ≥ 0, got {self.cap_per_user_day}")

    @classmethod
    def from_settings(cls, settings: Settings) -> EvidenceRules:
        return cls(cap_per_user_day=settings.community_cap_per_user_day,
                   allow_anonymous=settings.community_allow_anonymous)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def split_keys(keys: list[str], rules: EvidenceRules) -> tuple[list[str], list[str]]:
    """Raw keys as (the project's partition, the community partitions that count).

    The anonymous partition is left out unless allowed, and every community partition when the
    cap is 0: those files are never even read.
    """
    project: list[str] = []
    community: list[str] = []
    for key in keys:
        user = user_of_key(key)
        if user == USER_SCHEDULER:
            project.append(key)
        elif rules.cap_per_user_day > 0 and (user != USER_ANONYMOUS or rules.allow_anonymous):
            community.append(key)
    return project, community


def _prepared(raw: pl.LazyFrame) -> pl.LazyFrame:
    # No evidence column per row: each kind is aggregated on its own and labelled after, so the
    # group-by keeps its four keys.
    return raw.with_columns(
        date=pl.date(pl.col("year"), pl.col("month"), pl.col("day")),
        suite=pl.col("suite").fill_null(""),
    )


def project_rows(raw: pl.LazyFrame) -> pl.LazyFrame:
    """The project partition's rows that count; cells are not de-duplicated here (see
    ``aggregate.summarize``: a duplicate is rare, so it is found first and fixed after).

    ``cell`` is a 64-bit tag of (run, sample): within a summary group, fewer distinct tags than
    rows means a cell may have been written twice (a hash collision only costs an exact check).
    """
    return (
        _prepared(raw.filter(pl.col("source").is_in(PROJECT_SOURCES)))
        .with_columns(cell=pl.col("run_id").hash() + pl.col("sample_idx").cast(pl.UInt64))
    )


def one_row_per_cell(rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per project cell: its success if it has one (the first written), else its latest
    error, as ``tasks.run.state.final_rows`` counts a run's result."""
    ok = pl.col("error").is_null()
    micros = pl.col("timestamp").dt.epoch("us")
    return (
        rows.sort(~ok, pl.when(ok).then(micros).otherwise(-micros), "id")
        .unique(CELL_KEYS, keep="first", maintain_order=True)
    )


def community_rows(raw: pl.LazyFrame, rules: EvidenceRules) -> pl.LazyFrame:
    """The community partitions' rows that count: at most ``cap_per_user_day`` per contributor,
    model and day, the earliest first."""
    rows = _prepared(raw.filter(pl.col("source").is_in(COMMUNITY_SOURCES)))
    if not rules.allow_anonymous:
        # The partitions were skipped already; this also drops a stray anonymous row elsewhere.
        rows = rows.filter(pl.col("user_id").is_not_null() & (pl.col("user_id") != USER_ANONYMOUS))
    return (
        rows.sort("timestamp", "id")
        .filter(pl.int_range(pl.len()).over(CAP_KEYS) < rules.cap_per_user_day)
        # The same columns as the project's rows, for the same aggregation.
        .with_columns(cell=pl.lit(0, pl.UInt64))
    )
