"""The ``compaction`` flow: merge each day's small raw files, nothing else.

The nightly flow compacts too; this one exists so an operator can compact on its own (after a
large backfill or a burst of community submissions) without re-aggregating or publishing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.base import flow
from tasks.records.compaction import CompactionResult, compact_day
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import RAW, raw_days

# The nightly flow and this one both compact. Each run is crash-safe, but two compactions of the
# same day at the same instant may each keep a copy of the rows (see docs/storage.md); the tag lets
# one Prefect concurrency limit (`prefect concurrency-limit create plumbline-compaction 1`, see
# docs/deploy.md) serialize them across flows and workers.
COMPACTION_TAG = "plumbline-compaction"


@task(name="compact-day", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30],
      tags=[COMPACTION_TAG])
def compact_day_task(store: ObjectStore, day: date) -> CompactionResult:
    return compact_day(store, day)


def execute(store: ObjectStore, days: list[date] | None = None) -> dict[str, Any]:
    """Compact the given days (default: every day with raw data); one task per day."""
    logger = get_run_logger()
    present = raw_days([o.key for o in store.list(RAW + "/")])
    wanted = present if not days else sorted(set(days) & set(present))
    logger.info("compaction: %d of %d day(s) in %s", len(wanted), len(present), store.describe())
    futures = [compact_day_task.submit(store, d) for d in wanted]
    results = [f.result() for f in futures]
    files_in = sum(r.files_in for r in results)
    rows = sum(r.rows for r in results)
    logger.info("compaction: %d file(s), %d row(s) across %d day(s)", files_in, rows, len(wanted))
    return {"days": len(wanted), "files_in": files_in, "rows": rows}


@flow(name="compaction", log_prints=True)
def compaction(days: list[date] | None = None) -> dict[str, Any]:
    """Merge each day's small raw Parquet files into one per user partition."""
    return execute(open_store(Settings()), days)


if __name__ == "__main__":
    compaction()
