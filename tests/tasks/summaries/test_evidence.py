"""Issue 16, item 2: community rows never move the project's verdict; they get their own,
labelled; one contributor is capped per model and day; anonymous rows count only when allowed."""

from __future__ import annotations

import json
from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.drift.report import compute_reports
from tasks.identity import SOURCE_COMMUNITY, SOURCE_SCHEDULED
from tasks.records.io import write_records
from tasks.storage.layout import latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, last_day_of, plan, read_daily
from tasks.summaries.evidence import EvidenceRules
from tasks.summaries.payloads import DriftPayload, ModelsPayload
from tasks.summaries.publish import DRIFT, MODELS, publish_drift, render_report
from tests.support.demo import build_demo_history
from tests.support.helpers import community_record, record, write_community

TODAY = date(2026, 11, 30)
DAY = date(2026, 11, 20)
USERS = [f"{i:016x}" for i in range(1, 13)]
FLOODER = "f" * 16


def _community_day(day: date) -> bool:
    return (TODAY - day).days < 7  # in the recent window


def _flood_fake_stable(store: LocalStore) -> int:
    """Twelve contributors send fake/stable passing answers for four weeks, then failing, slow
    ones for a week; one more sends 1,000 failing rows a day in that week. Returns the rows."""
    rows = 0
    for offset in range(35):
        day = TODAY - timedelta(days=offset)
        bad = _community_day(day)
        for user in USERS:
            recs = [community_record(day, user, i, model_id="fake/stable", passed=not bad,
                                     score=0.0 if bad else 1.0,
                                     latency_ms=2000.0 + i if bad else 400.0 + i)
                    for i in range(20)]
            write_records(store, recs, user_id=user, source=SOURCE_COMMUNITY)
            rows += len(recs)
        if bad:
            write_community(store, day, FLOODER, 1000, model_id="fake/stable", passed=False,
                            score=0.0)
            rows += 1000
    return rows


def test_a_community_flood_does_not_move_the_project_verdict(store: LocalStore) -> None:
    build_demo_history(store, TODAY)
    aggregate_changed(store)
    before = compute_reports(read_daily(store)).project

    assert _flood_fake_stable(store) == 35 * 12 * 20 + 7 * 1000  # 15,400 community rows
    aggregate_changed(store)
    daily = read_daily(store)
    after = compute_reports(daily)

    # The project's report is exactly what it was: same verdicts, figures, tests, p-values.
    assert after.project.models == before.models
    assert_frame_equal(after.project.tests, before.tests)
    verdicts = {m["model_id"]: m["verdict"] for m in after.project.models}
    assert verdicts == {"fake/drifting": "drifting", "fake/stable": "stable"}

    # The community's own report sees the move, and is labelled.
    assert after.community.evidence == "community"
    (mine,) = [m for m in after.community.models if m["model_id"] == "fake/stable"]
    assert mine["verdict"] == "drifting"
    assert mine["pass_rate_baseline"] == 1.0 and mine["pass_rate_recent"] == 0.0
    # 12 contributors × 20 a day, plus the flooder's first 50 of 1,000 a day.
    assert mine["rows_recent"] == 7 * (12 * 20 + 50)
    assert mine["rows_baseline"] == 28 * 12 * 20

    # Published: the model's verdict is the project's; the community's sits beside it, labelled.
    publish_drift(store, after.project, {"fake/stable": TODAY, "fake/drifting": TODAY},
                  after.community, EvidenceRules())
    models = ModelsPayload.model_validate_json(store.get(latest_key(MODELS)), strict=True)
    stable = next(m for m in models.models if m.model_id == "fake/stable")
    assert stable.evidence == "project" and stable.verdict == "stable"
    assert stable.rows_recent == next(m["rows_recent"] for m in before.models
                                      if m["model_id"] == "fake/stable")
    assert stable.community is not None
    assert stable.community.evidence == "community" and stable.community.verdict == "drifting"
    assert models.evidence_rules is not None
    assert models.evidence_rules.community_cap_per_user_day == 50
    assert not models.evidence_rules.community_anonymous_counted
    drift = DriftPayload.model_validate_json(store.get(latest_key(DRIFT)), strict=True)
    assert drift.tests and {t.evidence for t in drift.tests} == {"project"}
    assert drift.community_tests and {t.evidence for t in drift.community_tests} == {"community"}
    assert {t.model_id for t in drift.community_tests} == {"fake/stable"}
    md = render_report(after.project, community=after.community)
    assert "| `fake/stable` | **stable** |" in md
    assert md.split("## Community evidence")[1].count("| `fake/stable` | **drifting** |") == 1


def _counted(store: LocalStore, rules: EvidenceRules | None = None) -> pl.DataFrame:
    aggregate_changed(store, rules=rules)
    return read_daily(store).filter(pl.col("evidence") == "community") \
        .group_by("date", "model_id").agg(pl.col("rows").sum(), pl.col("passes").sum()) \
        .sort("date", "model_id")


def test_one_contributor_counts_at_most_the_cap_per_model_and_day(store: LocalStore) -> None:
    # The flooder's first 50 (by timestamp) pass, the other 450 fail: the first 50 count.
    rows = [community_record(DAY, FLOODER, i, passed=i < 50) for i in range(500)]
    write_records(store, rows[250:], user_id=FLOODER, source=SOURCE_COMMUNITY)
    write_records(store, rows[:250], user_id=FLOODER, source=SOURCE_COMMUNITY)
    write_community(store, DAY, USERS[0], 10, passed=False)
    write_community(store, DAY, FLOODER, 80, model_id="fake/other")  # another model: own cap
    write_community(store, DAY + timedelta(days=1), FLOODER, 80)  # another day: own cap
    counted = _counted(store)
    assert counted.to_dicts() == [
        {"date": DAY, "model_id": "fake/other", "rows": 50, "passes": 50},
        {"date": DAY, "model_id": "fake/stable", "rows": 50 + 10, "passes": 50},
        {"date": DAY + timedelta(days=1), "model_id": "fake/stable", "rows": 50, "passes": 50},
    ]
    # The cap is a setting: a smaller one re-aggregates every day under the new rule.
    rules = EvidenceRules(cap_per_user_day=5)
    assert plan(store, rules).days == [DAY, DAY + timedelta(days=1)]
    assert _counted(store, rules)["rows"].to_list() == [5, 5 + 5, 5]
    # 0 counts no community row at all (the project's rows are untouched).
    write_records(store, [record(timestamp=rows[0]["timestamp"])], user_id="scheduler",
                  source=SOURCE_SCHEDULED)
    aggregate_changed(store, rules=EvidenceRules(cap_per_user_day=0))
    assert read_daily(store)["evidence"].unique().to_list() == ["project"]


@pytest.mark.parametrize("allowed", [False, True])
def test_anonymous_rows_count_only_when_the_operator_allows(
    store: LocalStore, allowed: bool
) -> None:
    write_community(store, DAY, "anonymous", 210, passed=False, score=0.0)
    write_community(store, DAY, USERS[0], 5)
    counted = _counted(store, EvidenceRules(allow_anonymous=allowed))
    # Allowed, the anonymous rows are one contributor: capped like anyone else.
    assert counted["rows"].to_list() == ([5 + 50] if allowed else [5])


def test_rows_whose_source_and_partition_disagree_are_not_counted(store: LocalStore) -> None:
    """Only user=scheduler/ holds project rows (the API cannot write there), and a user
    partition only community rows: a 'scheduled' row among a user's files is neither."""
    write_records(store, [record(timestamp=community_record(DAY, USERS[0], 0)["timestamp"],
                                 user_id=USERS[0], source=SOURCE_SCHEDULED)],
                  user_id=USERS[0], source=SOURCE_SCHEDULED)
    write_community(store, DAY, USERS[0], 3)
    aggregate_changed(store)
    daily = read_daily(store)
    assert daily.group_by("evidence").agg(pl.col("rows").sum()).rows() == [("community", 3)]


def test_a_community_row_dated_later_does_not_move_the_project_window(store: LocalStore) -> None:
    build_demo_history(store, TODAY)
    write_community(store, TODAY + timedelta(days=1), USERS[0], 3)
    aggregate_changed(store)
    assert last_day_of(store, "project") == TODAY
    reports = compute_reports(read_daily(store))
    assert reports.project.window.as_of == TODAY
    assert reports.community.window == reports.project.window
    assert {m["verdict"] for m in reports.project.models} == {"stable", "drifting"}


def test_models_seen_only_in_community_rows_are_listed_with_their_label(
    store: LocalStore
) -> None:
    build_demo_history(store, TODAY)
    write_community(store, TODAY, USERS[0], 40, model_id="fake__stable")
    aggregate_changed(store)
    reports = compute_reports(read_daily(store))
    publish_drift(store, reports.project, {"fake__stable": TODAY}, reports.community)
    doc = json.loads(store.get(latest_key(MODELS)))
    entry = next(m for m in doc["models"] if m["model_id"] == "fake__stable")
    assert entry["evidence"] == "project" and entry["verdict"] == "insufficient_data"
    assert entry["rows_recent"] == 0
    assert entry["community"]["evidence"] == "community"
    assert entry["community"]["rows_recent"] == 40
