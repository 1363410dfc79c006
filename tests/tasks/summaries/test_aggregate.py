"""Daily aggregation: the summary rows, the incremental manifest, GDPR dirty days."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from tasks.records.gdpr import anonymize_user, delete_user
from tasks.records.io import write_records
from tasks.storage.layout import AGGREGATE_MANIFEST_KEY, daily_summary_key, dirty_marker_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import (
    aggregate_changed,
    plan,
    read_daily,
    summary_days,
)
from tasks.summaries.evidence import EvidenceRules
from tests.support.helpers import record

DAY1 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
USER = "0123456789abcdef"


def _write(store: LocalStore, ts: datetime, n: int = 4, user: str = "scheduler",
           source: str = "scheduled", **overrides: object) -> None:
    rows = [record(**{"timestamp": ts, "user_id": user, "source": source, "sample_idx": i,
                      "latency_ms": 100.0 * (i + 1), "passed": i % 2 == 0,
                      "score": float(i % 2 == 0), "output": f"answer {i % 2}", **overrides})
            for i in range(n)]
    write_records(store, rows, user_id=user, source=source)


def test_summary_row_per_day_model_suite_prompt(store: LocalStore) -> None:
    _write(store, DAY1, n=4)
    _write(store, DAY1, n=2, model_id="fake/drifting")
    _write(store, DAY1, n=1, error="HTTP 503", passed=None, score=None, run_id="run-2")
    written = aggregate_changed(store)
    assert written == {date(2026, 11, 1): 2}
    daily = read_daily(store).sort("model_id")
    stable = daily.filter(pl.col("model_id") == "fake/stable").row(0, named=True)
    assert stable["rows"] == 5 and stable["errors"] == 1
    assert stable["passes"] == 2 and stable["scored"] == 4 and stable["pass_rate"] == 0.5
    assert stable["latency_p50_ms"] == pytest.approx(250.0)  # the failed call is excluded
    assert stable["distinct_outputs"] == 2
    assert sorted(stable["latency_values"]) == [100.0, 200.0, 300.0, 400.0]
    assert len(stable["output_hashes"]) == 2 and stable["output_len_mean"] == len("answer 0")
    assert summary_days(store) == [date(2026, 11, 1)]


def test_only_changed_days_are_reaggregated(store: LocalStore) -> None:
    _write(store, DAY1)
    _write(store, DAY2)
    assert set(aggregate_changed(store)) == {date(2026, 11, 1), date(2026, 11, 2)}
    assert store.exists(AGGREGATE_MANIFEST_KEY)
    assert plan(store).days == []  # nothing changed: a night aggregates nothing
    assert aggregate_changed(store) == {}
    _write(store, DAY2, n=3, run_id="run-2")
    assert plan(store).changed == [date(2026, 11, 2)]
    assert aggregate_changed(store) == {date(2026, 11, 2): 1}
    rows = read_daily(store, [date(2026, 11, 2)])["rows"].to_list()
    assert rows == [7]


def test_gdpr_delete_marks_day_dirty_and_rows_disappear(store: LocalStore) -> None:
    _write(store, DAY1, n=4)
    _write(store, DAY1, n=3, user=USER, source="community")
    aggregate_changed(store)
    assert read_daily(store)["rows"].sum() == 7
    delete_user(store, USER)
    assert store.exists(dirty_marker_key(DAY1.date()))
    todo = plan(store)
    assert todo.dirty == [DAY1.date()]
    aggregate_changed(store)
    assert read_daily(store)["rows"].sum() == 4
    assert not store.exists(dirty_marker_key(DAY1.date()))  # the marker was consumed


def test_dirty_marker_alone_forces_reaggregation(store: LocalStore) -> None:
    rules = EvidenceRules(allow_anonymous=True)  # anonymized rows still count
    _write(store, DAY1, n=2, user=USER, source="community")
    aggregate_changed(store, rules=rules)
    anonymize_user(store, USER)
    aggregate_changed(store, rules=rules)
    store.put(dirty_marker_key(DAY1.date()), b"")
    assert plan(store, rules).days == [DAY1.date()]
    assert aggregate_changed(store, rules=rules) == {DAY1.date(): 1}
    assert plan(store, rules).days == []


def test_day_whose_raw_data_is_gone_loses_its_summary(store: LocalStore) -> None:
    _write(store, DAY1, user=USER, source="community")
    _write(store, DAY2)
    aggregate_changed(store)
    delete_user(store, USER)
    assert plan(store).removed == [DAY1.date()]
    aggregate_changed(store)
    assert not store.exists(daily_summary_key(DAY1.date()))
    assert summary_days(store) == [DAY2.date()]


def test_corrupt_manifest_means_full_rebuild(store: LocalStore) -> None:
    _write(store, DAY1)
    aggregate_changed(store)
    store.put(AGGREGATE_MANIFEST_KEY, b"{not json")
    assert plan(store).days == [DAY1.date()]
