"""Daily aggregation: the summary rows, the incremental manifest, GDPR dirty days."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.catalog import load_suite
from tasks.providers.fake import FakeProvider, default_drift_date
from tasks.providers.registry import ProviderRegistry
from tasks.records.gdpr import anonymize_user, delete_user
from tasks.records.io import write_records
from tasks.records.live import read_day
from tasks.run.plan import resolve_config
from tasks.run.shard import run_shard
from tasks.storage.layout import AGGREGATE_MANIFEST_KEY, daily_summary_key, dirty_marker_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import (
    aggregate_changed,
    plan,
    read_daily,
    summary_days,
)
from tasks.summaries.evidence import EvidenceRules
from tests.support.demo import build_demo_history
from tests.support.helpers import record, write_community

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


# --- issue 16, item 4: a cell written twice counts once ---------------------------------------

def test_two_overlapping_runs_with_one_run_id_count_each_cell_once(store: LocalStore) -> None:
    """Two `run-suite` runs of one backfill run id, both finding 0 cells done, wrote 96 rows
    for the 48 cells of a day: the day's summary counts 48, exactly as if one run had."""
    today = date(2026, 11, 30)
    build_demo_history(store, today)
    aggregate_changed(store)
    once = read_daily(store, [today])
    suite = load_suite("smoke")
    registry = ProviderRegistry(instances={"fake": FakeProvider(default_drift_date(today))})
    config = resolve_config(suite, source="scheduled",
                            as_of=datetime.combine(today, time(6, 0), tzinfo=UTC),
                            run_id=f"demo-smoke-{today.isoformat()}")
    for model in ("fake/stable", "fake/drifting"):
        run_shard(suite, model, suite.cases, config, store, registry)  # the second run
    assert read_day(store, today).num_rows == 96
    assert plan(store).changed == [today]
    aggregate_changed(store)
    twice = read_daily(store, [today])
    assert twice["rows"].sum() == 48
    # The same figures (a value list's order is the order rows were read in, and means nothing).
    lists = [pl.col(c).list.sort() for c in ("latency_values", "score_values",
                                              "output_len_values")]
    assert_frame_equal(twice.with_columns(lists), once.with_columns(lists))


def test_a_duplicated_cell_counts_its_success(store: LocalStore) -> None:
    def cell(hour: int, error: str | None, **kw: object) -> dict[str, object]:
        return record(timestamp=DAY1.replace(hour=hour), error=error,
                      passed=None if error else True, score=None if error else 1.0,
                      latency_ms=100.0 * hour, output=None if error else f"ok {hour}", **kw)

    rows = [
        # prompt case-1: failed, then succeeded (a resume), then failed again (a rival run)
        cell(6, "HTTP 503"), cell(7, None), cell(8, "timeout"),
        # prompt case-2: two failures; the latest counts
        cell(6, "HTTP 503", prompt_id="case-2"), cell(9, "timeout", prompt_id="case-2"),
        # prompt case-3: two successes; the first written counts
        cell(10, None, prompt_id="case-3"), cell(11, None, prompt_id="case-3"),
        # prompt case-4: no duplicate, another sample of the same run
        cell(6, None, prompt_id="case-4"), cell(6, None, prompt_id="case-4", sample_idx=1),
    ]
    write_records(store, rows[:5], user_id="scheduler", source="scheduled")
    write_records(store, rows[5:], user_id="scheduler", source="scheduled")
    # Community rows all share run id "community" and sample 0: they are not cells.
    write_community(store, DAY1.date(), USER, 3)
    aggregate_changed(store)
    daily = read_daily(store).sort("evidence", "prompt_id")
    got = {(r["evidence"], r["prompt_id"]): r for r in daily.iter_rows(named=True)}
    one = got[("project", "case-1")]
    assert (one["rows"], one["errors"], one["passes"], one["latency_values"]) == (1, 0, 1, [700.0])
    two = got[("project", "case-2")]
    assert (two["rows"], two["errors"], two["scored"]) == (1, 1, 0)
    three = got[("project", "case-3")]
    assert (three["rows"], three["latency_values"]) == (1, [1000.0])
    assert got[("project", "case-4")]["rows"] == 2
    assert sum(r["rows"] for (ev, _), r in got.items() if ev == "community") == 3


def test_refusals_answered_and_the_most_common_error_are_counted(store: LocalStore) -> None:
    outputs = ["I'm sorry, but I can't help with that.", "Sure: 42.",
               "I cannot guarantee it, but the answer is 42.", "As an AI, I cannot do that."]
    rows = [record(timestamp=DAY1, sample_idx=i, output=o, run_id="run-r")
            for i, o in enumerate(outputs)]
    rows += [record(timestamp=DAY1, sample_idx=10 + i, output=None, passed=None, score=None,
                    error=e, run_id="run-r")
             for i, e in enumerate(["HTTP 503", "HTTP 503", "timeout " + "x" * 300])]
    write_records(store, rows, user_id="scheduler", source="scheduled")
    aggregate_changed(store)
    row = read_daily(store).row(0, named=True)
    assert row["rows"] == 7 and row["errors"] == 3 and row["answered"] == 4
    # The detector's rule (tasks/refusal.py): a refusal opens the output; "I cannot guarantee"
    # mid-answer is not one.
    assert row["refusals"] == 2
    assert row["top_error"] == "HTTP 503" and row["top_error_count"] == 2


def test_summaries_of_an_older_manifest_version_are_rebuilt(store: LocalStore) -> None:
    _write(store, DAY1)
    aggregate_changed(store)
    doc = json.loads(store.get(AGGREGATE_MANIFEST_KEY))
    doc["version"] = 2  # written before the refusal and error-message columns
    store.put(AGGREGATE_MANIFEST_KEY, json.dumps(doc).encode())
    assert plan(store).days == [date(2026, 11, 1)]
    assert aggregate_changed(store) == {date(2026, 11, 1): 1}
    assert plan(store).days == []
