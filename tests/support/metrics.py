"""Reading ``/metrics`` in tests: Prometheus' own parser, samples by name and labels, and the
published summaries the gauges come from."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tasks.storage.base import ObjectStore
from tasks.storage.layout import latest_key
from tasks.summaries.payloads import MODELS, NIGHTLY_STATUS, ProviderCalls
from tasks.summaries.publish import put_json
from tests.support.helpers import models_json

Key = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> dict[Key, float]:
    """Every sample of an exposition, by sample name and labels, via the client's own parser."""
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict[Key, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def requests_by_label(samples: dict[Key, float]) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for (name, labels), v in samples.items():
        if name == "plumbline_http_requests_total":
            d = dict(labels)
            counts[(d["method"], d["route"], d["status"])] = int(v)
    return counts


def label_values(samples: dict[Key, float]) -> set[str]:
    return {v for _, labels in samples for _, v in labels}


def publish_summaries(store: ObjectStore, *, finished_at: datetime | None = None,
                      models: list[dict[str, Any]] | None = None) -> None:
    """A nightly.json with every count, and a models.json with the given models."""
    put_json(store, NIGHTLY_STATUS, {
        "finished_at": (finished_at or datetime.now(UTC) - timedelta(hours=3)).isoformat(),
        "days": 35, "aggregated_days": 2, "summary_rows": 96, "rows_aggregated": 480,
        "as_of": "2026-11-30", "drifting": ["fake/drifting"], "tests": 212,
        "verdicts": {"stable": 1, "drifting": 1},
        "provider_calls": {"fake": ProviderCalls(rows=300, errors=30).model_dump(),
                           "openai": {"rows": 100, "errors": 0}},
    })
    doc = json.loads(models_json())
    base = doc["models"][0]
    doc["models"] = [{**base, **m} for m in (models or [
        {"model_id": "fake/drifting", "verdict": "drifting", "pass_rate_recent": 0.5,
         "rows_recent": 200},
        {"model_id": "fake/stable"},
    ])]
    store.put(latest_key(MODELS), json.dumps(doc).encode())


def scrape(client: TestClient, **headers: str) -> dict[Key, float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)
