"""Published summaries: the exact shapes the API and the dashboard read."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl
from pydantic import BaseModel

from tasks.drift.report import compute_drift, compute_reports
from tasks.providers.fake import default_drift_date
from tasks.records.io import write_records
from tasks.storage.layout import history_key, latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.payloads import (
    ChartPayload,
    DriftPayload,
    HistoryPayload,
    ModelsPayload,
    NightlyStatus,
)
from tasks.summaries.publish import (
    CHART,
    DRIFT,
    HISTORY_COLUMNS,
    MODELS,
    NIGHTLY_STATUS,
    drift_json_bytes,
    dump_json,
    publish_chart,
    publish_drift,
    publish_history,
    publish_status,
    render_report,
)
from tests.support.demo import build_demo_history
from tests.support.helpers import record, write_community

TODAY = date(2026, 11, 30)


def _published(store: LocalStore) -> dict[str, object]:
    build_demo_history(store, TODAY)
    aggregate_changed(store)
    daily = read_daily(store)
    report = compute_drift(daily)
    last_seen = {"fake/stable": TODAY, "fake/drifting": TODAY, "fake/retired": date(2026, 1, 1)}
    publish_chart(store, daily)
    publish_drift(store, report, last_seen)
    publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
    return {"report": report}


def _json(store: LocalStore, key: str) -> dict:
    return json.loads(store.get(key))


def test_models_json_shape(store: LocalStore) -> None:
    _published(store)
    doc = _json(store, latest_key(MODELS))
    assert doc["window"]["as_of"] == "2026-11-30"
    assert doc["window"]["recent_days"] == 7 and doc["window"]["baseline_days"] == 28
    by_id = {m["model_id"]: m for m in doc["models"]}
    assert set(by_id) == {"fake/stable", "fake/drifting", "fake/retired"}
    for m in by_id.values():
        assert {"model_id", "last_seen", "rows_recent", "rows_baseline", "pass_rate_recent",
                "pass_rate_baseline", "consistency", "consistency_band", "verdict",
                "suites"} <= set(m)
    assert by_id["fake/drifting"]["verdict"] == "drifting"
    assert by_id["fake/stable"]["verdict"] == "stable"
    assert by_id["fake/stable"]["suites"] == ["smoke"]
    assert by_id["fake/stable"]["last_seen"] == "2026-11-30"
    retired = by_id["fake/retired"]
    assert retired["verdict"] == "insufficient_data" and retired["last_seen"] == "2026-01-01"


def test_drift_json_shape(store: LocalStore) -> None:
    _published(store)
    doc = _json(store, latest_key(DRIFT))
    assert doc["window"]["as_of"] == "2026-11-30"
    fields = {"model_id", "suite", "prompt_id", "metric", "test", "statistic", "p_value",
              "p_adjusted", "effect_size", "effect_measure", "n_recent", "n_baseline",
              "recent_value", "baseline_value", "ci_recent", "significant"}
    assert doc["tests"] and all(fields <= set(t) for t in doc["tests"])
    metrics = {t["metric"] for t in doc["tests"]}
    assert {"pass_rate", "latency_ms", "output_len", "consistency"} <= metrics
    model_level = [t for t in doc["tests"] if t["suite"] is None and t["prompt_id"] is None]
    assert model_level
    rates = {"pass_rate", "error_rate", "refusal_rate"}
    pass_tests = [t for t in doc["tests"] if t["metric"] in rates]
    assert all(t["test"] in {"fisher", "chi2"} for t in pass_tests)
    assert all(len(t["ci_recent"]) == 2 for t in pass_tests)
    assert all(t["ci_recent"] is None for t in doc["tests"] if t["metric"] not in rates)
    # No distances were handed to this night's drift stage: drift.json says the metric was
    # skipped, and why.
    assert doc["semantic"]["status"] == "skipped" and doc["semantic"]["reason"]
    assert all(0 <= t["p_adjusted"] <= 1 for t in doc["tests"] if t["p_value"] is not None)
    assert any(t["significant"] for t in doc["tests"] if t["model_id"] == "fake/drifting")


def test_history_and_chart(store: LocalStore) -> None:
    _published(store)
    hist = _json(store, history_key("fake/drifting"))
    assert hist["model_id"] == "fake/drifting" and len(hist["days"]) == 35
    day = hist["days"][-1]
    assert set(day) >= {"date", "rows", "pass_rate", "score_mean", "latency_p50_ms",
                        "latency_p95_ms", "distinct_outputs", "output_len_mean", "cost_usd",
                        "consistency"}
    assert day["date"] == "2026-11-30" and day["rows"] == 24
    first = hist["days"][0]
    assert first["consistency"] is None  # no previous day to compare with
    assert day["latency_p50_ms"] > first["latency_p50_ms"] * 1.3  # the drift is visible
    drift_day = next(d for d in hist["days"] if d["date"] == str(default_drift_date(TODAY)))
    assert drift_day["consistency"] < 0.8  # the new wording changed every answer that day
    chart = _json(store, latest_key(CHART))
    assert chart["models"] == ["fake/drifting", "fake/stable"]
    assert chart["total_submissions"] == 35 * 48 and len(chart["data"]) == 35
    assert chart["data"][0] == {"date": "2026-10-27", "fake/drifting": 24, "fake/stable": 24}


def test_history_of_vanished_model_is_removed(store: LocalStore) -> None:
    frame = pl.DataFrame()
    store.put(history_key("old/model"), b"{}")
    assert publish_history(store, frame) == []
    assert not store.exists(history_key("old/model"))


def test_markdown_report_names_the_drifting_model(store: LocalStore) -> None:
    report = _published(store)["report"]
    md = render_report(report)  # type: ignore[arg-type]
    assert md.startswith("# Plumbline drift report — 2026-11-30")
    assert "| `fake/drifting` | **drifting** |" in md and "## Why" in md


def test_every_published_file_is_its_payload_model_byte_for_byte(store: LocalStore) -> None:
    """What publish writes validates against the payload model (strictly: an int is an int),
    and dumping the parsed model gives the same bytes back: the model is the whole shape."""
    _published(store)
    publish_status(store, days=35, aggregated_days=35, summary_rows=1680, as_of="2026-11-30",
                   drifting=["fake/drifting"])
    files: list[tuple[str, type[BaseModel]]] = [
        (latest_key(CHART), ChartPayload), (latest_key(MODELS), ModelsPayload),
        (latest_key(NIGHTLY_STATUS), NightlyStatus),
        (history_key("fake/stable"), HistoryPayload),
        (history_key("fake/drifting"), HistoryPayload),
    ]
    for key, model in files:
        data = store.get(key)
        assert dump_json(model.model_validate_json(data, strict=True)) == data, key
    # drift.json's tests are written by Polars (its own float spelling), so compare values.
    data = store.get(latest_key(DRIFT))
    drift = DriftPayload.model_validate_json(data, strict=True)
    assert drift.model_dump(mode="json") == json.loads(data)
    assert {t.metric for t in drift.tests} >= {"pass_rate", "latency_ms", "output_len",
                                               "consistency"}
    assert drift.config.level_shares == [0.6, 0.2, 0.2]


def test_drift_json_of_a_night_without_tests_is_valid(store: LocalStore) -> None:
    report = compute_drift(pl.DataFrame(), as_of=TODAY)
    drift = DriftPayload.model_validate_json(drift_json_bytes(report), strict=True)
    assert drift.tests == [] and drift.window.as_of == TODAY


def test_nightly_status_keeps_its_timestamp_spelling(store: LocalStore) -> None:
    publish_status(store, days=0, aggregated_days=0, summary_rows=0, as_of=None, drifting=[])
    doc = _json(store, latest_key(NIGHTLY_STATUS))
    assert doc["finished_at"].endswith("+00:00")  # datetime.isoformat(), not pydantic's "Z"
    assert doc["as_of"] is None and doc["drifting"] == []


def test_community_evidence_is_published_labelled_in_every_file(store: LocalStore) -> None:
    """With community rows beside the project's, every file still validates (strictly) and
    round-trips byte for byte, and each community figure carries its label."""
    build_demo_history(store, TODAY)
    for offset in range(35):
        day = date.fromordinal(TODAY.toordinal() - offset)
        for user in ("0000000000000001", "0000000000000002"):
            write_community(store, day, user, 8, model_id="fake/stable", passed=offset > 6)
    aggregate_changed(store)
    daily = read_daily(store)
    reports = compute_reports(daily)
    publish_chart(store, daily)
    publish_drift(store, reports.project, {"fake/stable": TODAY, "fake/drifting": TODAY},
                  reports.community)
    publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
    for key, model in [(latest_key(MODELS), ModelsPayload),
                       (history_key("fake/stable"), HistoryPayload),
                       (history_key("fake/drifting"), HistoryPayload)]:
        data = store.get(key)
        assert dump_json(model.model_validate_json(data, strict=True)) == data, key
    models = {m["model_id"]: m for m in _json(store, latest_key(MODELS))["models"]}
    assert models["fake/stable"]["verdict"] == "stable"
    assert models["fake/stable"]["community"]["evidence"] == "community"
    assert models["fake/stable"]["community"]["verdict"] == "drifting"
    assert models["fake/drifting"]["community"] is None
    hist = _json(store, history_key("fake/stable"))
    assert len(hist["days"]) == len(hist["community_days"]) == 35
    assert {d["evidence"] for d in hist["days"]} == {"project"}
    assert {d["evidence"] for d in hist["community_days"]} == {"community"}
    assert hist["days"][-1]["rows"] == 24 and hist["community_days"][-1]["rows"] == 16
    assert hist["community_days"][-1]["pass_rate"] == 0.0
    assert hist["days"][-1]["pass_rate"] > 0.5
    data = store.get(latest_key(DRIFT))
    drift = DriftPayload.model_validate_json(data, strict=True)
    assert drift.model_dump(mode="json") == json.loads(data)
    assert {t.evidence for t in drift.tests} == {"project"}
    assert {t.evidence for t in drift.community_tests} == {"community"}
    # The chart counts both kinds: it is the seed's "submissions per day".
    assert _json(store, latest_key(CHART))["total_submissions"] == 35 * (48 + 16)


def test_an_outage_is_published_as_availability_not_as_a_verdict(store: LocalStore) -> None:
    build_demo_history(store, TODAY)
    ts = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
    failed = [record(timestamp=ts, model_id="fake/stable", prompt_id="smoke-001", sample_idx=i,
                     run_id="outage", output=None, passed=None, score=None,
                     error="HTTP 503: upstream unavailable") for i in range(60)]
    write_records(store, failed, user_id="scheduler", source="scheduled")
    aggregate_changed(store)
    report = compute_drift(read_daily(store))
    publish_drift(store, report, {"fake/stable": TODAY, "fake/drifting": TODAY})
    publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
    models = {m["model_id"]: m for m in _json(store, latest_key(MODELS))["models"]}
    stable = models["fake/stable"]
    assert stable["verdict"] == "stable"  # failed calls are not evidence about answers
    assert stable["availability"]["status"] == "degraded"
    assert stable["availability"]["top_error"] == "HTTP 503: upstream unavailable"
    assert stable["availability"]["error_rate_recent"] > stable["availability"][
        "error_rate_baseline"] == 0
    assert models["fake/drifting"]["availability"]["status"] == "ok"
    assert [m["model_id"] for m in report.degraded] == ["fake/stable"]
    days = {d["date"]: d for d in _json(store, history_key("fake/stable"))["days"]}
    outage = days["2026-11-29"]
    assert outage["errors"] == 60 and outage["error_rate"] == 60 / outage["rows"]
    assert days["2026-11-28"]["errors"] == 0 and days["2026-11-28"]["refusal_rate"] == 0.0
    text = render_report(report)
    assert "## Availability" in text and "HTTP 503: upstream unavailable" in text
    error_tests = [t for t in _json(store, latest_key(DRIFT))["tests"]
                   if t["metric"] == "error_rate" and t["model_id"] == "fake/stable"]
    assert error_tests and error_tests[0]["significant"]
