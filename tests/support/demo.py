"""The demo's history, built through the real engine: what ``plumbline demo`` writes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from tasks.catalog import load_suite
from tasks.drift.report import compute_drift
from tasks.providers.fake import FakeProvider, default_drift_date
from tasks.providers.registry import ProviderRegistry
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.publish import HISTORY_COLUMNS, publish_drift, publish_history


def build_demo_history(store: LocalStore, today: date, days: int = 35) -> None:
    """What ``plumbline demo`` writes: the smoke suite, 3 samples, temperature 0, fake/stable and
    fake/drifting (drifting on the demo's default date), one scheduled run per backdated day."""
    suite = load_suite("smoke")
    registry = ProviderRegistry(instances={"fake": FakeProvider(default_drift_date(today))})
    for i in range(days):
        day = today - timedelta(days=days - 1 - i)
        config = resolve_config(suite, source="scheduled",
                                as_of=datetime.combine(day, time(6, 0), tzinfo=UTC),
                                run_id=f"demo-smoke-{day.isoformat()}")
        for model in ("fake/stable", "fake/drifting"):
            run_shard(suite, model, suite.cases, config, store, registry)


def publish_demo_night(store: LocalStore, today: date) -> None:
    """The demo history, then what a night publishes from it: drift (models.json, drift.json)
    and every model's history, without Prefect (the stages' plain functions)."""
    build_demo_history(store, today)
    aggregate_changed(store)
    publish_drift(store, compute_drift(read_daily(store)),
                  {"fake/stable": today, "fake/drifting": today})
    publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
