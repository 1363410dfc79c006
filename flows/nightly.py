"""The ``nightly`` flow: compact each day's small files, aggregate with Polars, publish."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.aggregate import aggregate_day, read_daily
from tasks.compaction import CompactionResult, compact_day
from tasks.publish import publish_chart, publish_status
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import RAW, raw_days


@task(name="compact-day", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def compact_day_task(store: ObjectStore, day: date) -> CompactionResult:
    return compact_day(store, day)


@task(name="aggregate-day", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def aggregate_day_task(store: ObjectStore, day: date) -> int:
    return aggregate_day(store, day).height


@task(name="publish", cache_policy=NO_CACHE)
def publish_task(store: ObjectStore, days: int) -> dict[str, Any]:
    daily = read_daily(store)
    chart_key = publish_chart(store, daily)
    status_key = publish_status(store, days=days, summary_rows=daily.height)
    return {"chart": chart_key, "status": status_key}


def execute(store: ObjectStore) -> dict[str, Any]:
    logger = get_run_logger()
    days = raw_days([o.key for o in store.list(RAW + "/")])
    logger.info("nightly: %d day(s) of raw data in %s", len(days), store.describe())
    compactions = [compact_day_task.submit(store, d) for d in days]
    for fut in compactions:
        fut.result()
    groups = sum(f.result() for f in [aggregate_day_task.submit(store, d) for d in days])
    published = publish_task(store, len(days))
    logger.info("nightly: %d summary rows; published %s", groups, ", ".join(published.values()))
    return {"days": len(days), "summary_rows": groups, **published}


@flow(name="nightly", log_prints=True)
def nightly() -> dict[str, Any]:
    """Compact, aggregate and publish the summaries the API serves."""
    return execute(open_store(Settings()))


if __name__ == "__main__":
    nightly()
