"""/openapi.json describes every read route's response body, and the routes still serve the
published bytes as they are (the response models document them, they do not re-serialise)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tasks.drift.report import compute_drift
from tasks.storage.layout import evidence_key, history_key, latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import aggregate_changed, read_daily
from tasks.summaries.beforeafter import night_evidence
from tasks.summaries.publish import (
    CHART,
    DRIFT,
    HISTORY_COLUMNS,
    MODELS,
    NIGHTLY_STATUS,
    publish_chart,
    publish_drift,
    publish_history,
    publish_status,
)
from tests.support.demo import build_demo_history

READ_ROUTES = {  # path → (schema of its 200 body, fields a reader relies on)
    "/api/data/chart": ("ChartPayload", {"data", "models", "total_submissions"}),
    "/api/models": ("ModelsPayload", {"generated_at", "window", "models"}),
    "/api/models/{model_id}/history": ("HistoryPayload", {"model_id", "days"}),
    "/api/models/{model_id}/evidence": ("ModelEvidencePayload",
                                        {"model_id", "generated_at", "window", "prompts"}),
    "/api/drift": ("DriftPayload", {"generated_at", "window", "config", "tests"}),
    "/api/health": ("HealthResponse", {"status", "version", "storage", "last_nightly"}),
}
NESTED = {  # schema → (field, item schema, fields of an item)
    "ChartPayload": ("data", "ChartDay", {"date"}),
    "ModelsPayload": ("models", "ModelSummary", {
        "model_id", "last_seen", "rows_recent", "rows_baseline", "pass_rate_recent",
        "pass_rate_baseline", "consistency", "consistency_band", "verdict", "reasons",
        "significant_tests", "suites"}),
    "HistoryPayload": ("days", "HistoryDay", {
        "date", "rows", "pass_rate", "score_mean", "latency_p50_ms", "latency_p95_ms",
        "distinct_outputs", "output_len_mean", "cost_usd", "consistency"}),
    "ModelEvidencePayload": ("prompts", "PromptEvidence", {
        "prompt_id", "suite", "metric", "p_adjusted", "baseline", "recent", "diff"}),
    "DriftPayload": ("tests", "DriftTest", {
        "model_id", "suite", "prompt_id", "level", "metric", "test", "statistic", "p_value",
        "p_adjusted", "effect_size", "effect_measure", "n_recent", "n_baseline", "recent_value",
        "baseline_value", "ci_recent", "significant"}),
}


def _ref(schema: dict[str, Any]) -> str:
    return schema["$ref"].removeprefix("#/components/schemas/")


@pytest.mark.parametrize("path", sorted(READ_ROUTES))
def test_openapi_describes_the_read_routes_bodies(client: TestClient, path: str) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    name, fields = READ_ROUTES[path]
    ok = spec["paths"][path]["get"]["responses"]["200"]
    assert _ref(ok["content"]["application/json"]["schema"]) == name
    body = schemas[name]
    assert fields <= set(body["properties"]), set(body["properties"])
    if name in NESTED:
        field, item, item_fields = NESTED[name]
        assert _ref(body["properties"][field]["items"]) == item
        assert item_fields <= set(schemas[item]["properties"])
    if name in ("ModelsPayload", "DriftPayload", "ModelEvidencePayload"):
        assert _ref(body["properties"]["window"]) == "DriftWindow"
        assert body["properties"]["generated_at"]["format"] == "date-time"


def test_chart_day_documents_its_per_model_counts(client: TestClient) -> None:
    day = client.get("/openapi.json").json()["components"]["schemas"]["ChartDay"]
    assert day["additionalProperties"] == {"type": "integer"}


def test_read_routes_serve_the_published_bytes(client: TestClient, store: LocalStore) -> None:
    today = date(2026, 11, 30)
    build_demo_history(store, today)
    aggregate_changed(store)
    daily = read_daily(store)
    publish_chart(store, daily)
    publish_drift(store, compute_drift(daily), {"fake/stable": today, "fake/drifting": today})
    publish_history(store, read_daily(store, columns=HISTORY_COLUMNS))
    publish_status(store, days=35, aggregated_days=35, summary_rows=70, as_of=today,
                   drifting=["fake/drifting"])
    night_evidence(store, compute_drift(daily))
    for path, key in (("/api/data/chart", latest_key(CHART)), ("/api/models", latest_key(MODELS)),
                      ("/api/drift", latest_key(DRIFT)),
                      ("/api/models/fake/stable/history", history_key("fake/stable")),
                      ("/api/models/fake/drifting/evidence", evidence_key("fake/drifting"))):
        r = client.get(path)
        assert r.status_code == 200 and r.content == store.get(key), path
    finished = store.get(latest_key(NIGHTLY_STATUS)).decode()
    assert f'"finished_at":"{client.get("/api/health").json()["last_nightly"]}"' in finished
