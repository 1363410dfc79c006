"""``GET /metrics``: scraped during a load from a real server and read with Prometheus' own parser;
counters match what was sent, and no label value comes from a request. Then each metric family
on its own (TestClient), the settings that guard the route, and several processes sharing their
counters. (The dashboard and alert rules: tests/deployments/test_monitoring.py.)"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.gauges import VERDICTS
from api.metrics import REFUSAL_REASONS, UNMATCHED
from tasks.errors import ConfigError, StorageError
from tasks.settings import Settings
from tasks.storage.layout import latest_key
from tasks.storage.local import LocalStore
from tasks.summaries.payloads import MODELS, NIGHTLY_STATUS
from tasks.summaries.publish import put_json
from tests.api.conftest import SECRET, auth, make_token, pramana_payload
from tests.api.uvicorn_server import Server
from tests.support.helpers import DelegatingStore
from tests.support.metrics import (
    Key,
    label_values,
    parse,
    publish_summaries,
    requests_by_label,
    scrape,
    value,
)

METRICS_TOKEN = "metrics-token-0123456789abcdef"


# --- the load test: a real server, concurrent clients, scrapes in between ---------------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = LocalStore(tmp_path / "data")
    publish_summaries(store)
    srv = Server({"PLUMBLINE_DATA_DIR": str(tmp_path / "data"),
                  "PLUMBLINE_SPOOL_DIR": str(tmp_path / "spool"), "PLUMBLINE_STORAGE": "local",
                  "NEXTAUTH_SECRET": SECRET, "RATE_LIMIT_PER_MINUTE": "0"},
                 tmp_path / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _client_load(url: str, rounds: int, sent: Counter[tuple[str, str, str]],
                 randoms: list[str], lock: threading.Lock) -> None:
    """Each round: a summary read, a history and a path no route has (random ids), a submission
    with a random model id, and one refused for its hash."""
    mine: Counter[tuple[str, str, str]] = Counter()
    tokens = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(rounds):
            token = uuid.uuid4().hex[:12]
            tokens.append(token)
            calls: list[tuple[str, str, str, dict[str, Any] | None]] = [
                ("GET", "/api/models", "/api/models", None),
                ("GET", f"/api/models/rnd-{token}/x/history",
                 "/api/models/{model_id}/history", None),
                ("GET", f"/{token}/{token}.php", UNMATCHED, None),
                ("POST", "/api/submit", "/api/submit",
                 pramana_payload(model_id=f"rnd-{token}/model", prompt_id=f"p-{token}")),
                ("POST", "/api/submit", "/api/submit",
                 pramana_payload(model_id=f"rnd-{token}/other", result_hash="ab" * 32)),
            ]
            for method, path, template, body in calls:
                r = client.request(method, path, json=body)
                mine[(method, template, str(r.status_code))] += 1
    with lock:
        sent.update(mine)
        randoms.extend(tokens)


def test_a_scrape_during_load_counts_every_request_and_labels_nothing_from_input(
    server: Server,
) -> None:
    url = server.url
    baseline = parse(httpx.get(url + "/metrics").text)
    sent: Counter[tuple[str, str, str]] = Counter()
    randoms: list[str] = []
    lock = threading.Lock()
    workers = [threading.Thread(target=_client_load, args=(url, 25, sent, randoms, lock))
               for _ in range(6)]
    for w in workers:
        w.start()
    # Scrape while the load runs: every exposition parses, and counters never go back.
    scrapes, last_total = 0, 0.0
    with httpx.Client(base_url=url, timeout=30) as scraper:
        while any(w.is_alive() for w in workers):
            samples = parse(scraper.get("/metrics").text)
            scrapes += 1
            total = sum(requests_by_label(samples).values())
            assert total >= last_total
            last_total = total
            time.sleep(0.05)
    for w in workers:
        w.join()
    final = parse(httpx.get(url + "/metrics").text)

    # Every request the clients sent is counted once, under its route template and status.
    assert scrapes >= 2
    assert sent[("GET", "/api/models", "200")] == 150
    assert sent[("POST", "/api/submit", "200")] == sent[("POST", "/api/submit", "422")] == 150
    delta = requests_by_label(final) - requests_by_label(baseline)
    assert delta.pop(("GET", "/metrics", "200")) == 1 + scrapes  # baseline, and under load
    assert delta == sent
    for (method, route, status), n in sent.items():  # and timed once
        labels = {"method": method, "route": route, "status": status}
        before = value(baseline, "plumbline_http_request_duration_seconds_count", **labels)
        after = value(final, "plumbline_http_request_duration_seconds_count", **labels)
        assert (after or 0) - (before or 0) == n
    assert value(final, "plumbline_submission_results_total", outcome="accepted") == 150
    assert value(final, "plumbline_submissions_refused_total",
                 route="/api/submit", reason="hash_mismatch") == 150

    # No label value comes from a request: not the random paths, not the random model ids.
    labels = label_values(final)
    assert len(randoms) == 150
    leaked = [t for t in randoms if any(t in v for v in labels)]
    assert leaked == []
    routes = {dict(ls)["route"] for name, ls in final if name == "plumbline_http_requests_total"}
    assert routes == {"/api/models", "/api/models/{model_id}/history", UNMATCHED, "/api/submit",
                      "/metrics", "/api/health"}
    model_ids = {dict(ls)["model_id"] for _, ls in final if "model_id" in dict(ls)}
    assert model_ids == {"fake/drifting", "fake/stable"}  # only the published ones
    assert value(final, "plumbline_spool_pending_rows") == 150


# --- each family on its own -------------------------------------------------------------------
def test_refused_submissions_are_counted_by_reason(
    app_factory: Callable[..., FastAPI],
) -> None:
    app = app_factory(rate_limit_per_minute=6, max_body_bytes=4096)
    with TestClient(app) as client:
        assert client.post("/api/submit", json=pramana_payload()).status_code == 200
        assert client.post("/api/submit", json=pramana_payload()).status_code == 200  # duplicate
        assert client.post("/api/submit", json={"model_id": "x"}).status_code == 422
        assert client.post("/api/submit", json=pramana_payload(result_hash="ab" * 32),
                           ).status_code == 422
        assert client.post("/api/submit/batch", json={"results": [pramana_payload()]},
                           headers=auth("not-a-jwt")).status_code == 401
        assert client.post("/api/submit/batch", content=b"x" * 5000).status_code == 413
        assert client.post("/api/submit/batch", json={"results": []}).status_code == 429
        samples = scrape(client)
    assert value(samples, "plumbline_submission_results_total", outcome="accepted") == 1
    assert value(samples, "plumbline_submission_results_total", outcome="duplicate") == 1
    refused = {(dict(ls)["route"], dict(ls)["reason"]): v for (name, ls), v in samples.items()
               if name == "plumbline_submissions_refused_total" and v}
    assert refused == {("/api/submit", "invalid"): 1, ("/api/submit", "hash_mismatch"): 1,
                       ("/api/submit/batch", "unauthorized"): 1,
                       ("/api/submit/batch", "too_large"): 1,
                       ("/api/submit/batch", "rate_limited"): 1}
    # Every reason of the fixed set is there from the start, at 0 until it happens.
    reasons = {dict(ls)["reason"] for name, ls in samples
               if name == "plumbline_submissions_refused_total"}
    assert reasons == set(REFUSAL_REASONS)


def test_requests_answered_before_routing_get_their_route_template(
    app_factory: Callable[..., FastAPI],
) -> None:
    """The rate limiter answers before the router runs: its 429 still names the route (and a
    method the app does not know is ``other``)."""
    app = app_factory(rate_limit_per_minute=1)
    templates = {p for p in app.openapi()["paths"]
                 if p.startswith("/api/") and p != "/api/health"}  # health is exempt
    with TestClient(app) as client:
        client.get("/api/health")  # exempt
        client.get("/api/data/chart")  # the one request the budget allows
        for template in templates:
            path = template.replace("{model_id}", "openai/gpt-4o")
            method = next(iter(app.openapi()["paths"][template]))
            assert client.request(method.upper(), path).status_code == 429
        client.request("BREW", "/api/models")
        client.get("/api/models/a/b/history?x=1")
        client.get(f"/api/{uuid.uuid4().hex}")
        samples = scrape(client)
    seen = {dict(ls)["route"] for (name, ls), v in samples.items()
            if name == "plumbline_http_requests_total" and dict(ls)["status"] == "429"}
    assert seen == templates | {UNMATCHED}
    assert value(samples, "plumbline_http_requests_total", method="other", route="/api/models",
                 status="429") == 1
    assert value(samples, "plumbline_http_requests_total", method="GET", route=UNMATCHED,
                 status="429") == 1


def test_the_route_template_of_a_wrong_method_is_the_route(client: TestClient) -> None:
    assert client.get("/api/submit").status_code == 405
    samples = scrape(client)
    assert value(samples, "plumbline_http_requests_total", method="GET", route="/api/submit",
                 status="405") == 1


def test_spool_and_flush_failures(app_factory: Callable[..., FastAPI], store: LocalStore) -> None:
    class Broken(DelegatingStore):
        def put(self, key: str, data: bytes) -> None:
            if key.startswith("raw/"):
                raise StorageError("the bucket is unreachable")
            super().put(key, data)

    app = app_factory(Broken(store), spool_flush_seconds=0.05)
    with TestClient(app) as client:
        for i in range(3):
            client.post("/api/submit", json=pramana_payload(prompt_id=f"p{i}"))
        deadline = time.monotonic() + 10
        while True:
            samples = scrape(client)
            if value(samples, "plumbline_spool_flush_failures_total") or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert (value(samples, "plumbline_spool_flush_failures_total") or 0) >= 1
    assert value(samples, "plumbline_spool_pending_rows") == 3
    assert (value(samples, "plumbline_spool_oldest_pending_age_seconds") or 0) > 0
    assert value(samples, "plumbline_scrape_source_ok", source="spool") == 1


def test_nightly_and_model_gauges_come_from_the_published_summaries(
    client: TestClient, store: LocalStore,
) -> None:
    samples = scrape(client)  # nothing published yet: no gauges, and nothing failed
    assert not any(name.startswith(("plumbline_nightly", "plumbline_model_"))
                   for name, _ in samples)
    assert value(samples, "plumbline_scrape_source_ok", source="nightly") == 1

    finished = datetime.now(UTC) - timedelta(hours=27)
    publish_summaries(store, finished_at=finished)
    samples = scrape(client)
    age = value(samples, "plumbline_nightly_age_seconds")
    assert age is not None and 27 * 3600 <= age < 27 * 3600 + 60
    assert value(samples, "plumbline_nightly_finished_timestamp_seconds") == finished.timestamp()
    assert value(samples, "plumbline_nightly_rows_aggregated") == 480
    assert value(samples, "plumbline_nightly_tests") == 212
    assert {v: value(samples, "plumbline_nightly_models", verdict=v) for v in VERDICTS} == {
        "stable": 1, "watch": 0, "drifting": 1, "insufficient_data": 0}
    assert value(samples, "plumbline_nightly_provider_error_rate", provider="fake") == 0.1
    assert value(samples, "plumbline_nightly_provider_error_rate", provider="openai") == 0
    assert value(samples, "plumbline_nightly_error_rate") == 30 / 400
    assert value(samples, "plumbline_model_verdict", model_id="fake/drifting",
                 verdict="drifting") == 1
    assert value(samples, "plumbline_model_verdict", model_id="fake/drifting",
                 verdict="stable") == 0
    assert value(samples, "plumbline_model_pass_rate", model_id="fake/drifting",
                 window="recent") == 0.5
    assert value(samples, "plumbline_model_rows", model_id="fake/stable", window="baseline") == 672


def test_an_older_nightly_file_still_gives_its_age(client: TestClient, store: LocalStore) -> None:
    put_json(store, NIGHTLY_STATUS, {"finished_at": datetime.now(UTC).isoformat(), "days": 3})
    samples = scrape(client)
    assert value(samples, "plumbline_nightly_age_seconds") is not None
    assert value(samples, "plumbline_nightly_days") == 3
    assert value(samples, "plumbline_nightly_tests") is None


def test_an_unreadable_summary_is_reported_not_a_failed_scrape(
    client: TestClient, store: LocalStore,
) -> None:
    publish_summaries(store)
    store.put(latest_key(MODELS), b'{"models": []}')
    samples = scrape(client)
    assert value(samples, "plumbline_scrape_source_ok", source="models") == 0
    assert value(samples, "plumbline_scrape_source_ok", source="nightly") == 1
    assert value(samples, "plumbline_nightly_tests") == 212


def test_models_over_the_cap_are_counted_not_labelled(
    app_factory: Callable[..., FastAPI], store: LocalStore,
) -> None:
    publish_summaries(store, models=[
        {"model_id": f"crowd/m{i}", "rows_recent": i} for i in range(20)])
    with TestClient(app_factory(metrics_max_models=5)) as client:
        samples = scrape(client)
    model_ids = {dict(ls)["model_id"] for _, ls in samples if "model_id" in dict(ls)}
    assert model_ids == {f"crowd/m{i}" for i in range(15, 20)}  # the most recent rows
    assert value(samples, "plumbline_models_omitted") == 15


def test_each_app_has_its_own_registry(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory()) as one, TestClient(app_factory()) as two:
        for _ in range(3):
            one.get("/api/data/chart")
        two.get("/api/data/chart")
        first, second = scrape(one), scrape(two)

    def charts(samples: dict[Key, float]) -> int:
        return sum(n for (m, route, _), n in requests_by_label(samples).items()
                   if route == "/api/data/chart")

    assert (charts(first), charts(second)) == (3, 1)


# --- the settings that guard it ---------------------------------------------------------------

def test_a_metrics_token_is_required_when_set(app_factory: Callable[..., FastAPI]) -> None:
    app = app_factory(metrics_token=SecretStr(METRICS_TOKEN))
    with TestClient(app) as client:
        for headers in ({}, auth("wrong-token-0123456789abcdef"), auth(make_token()),
                        {"Authorization": f"Basic {METRICS_TOKEN}"},
                        {"Authorization": "Bearer " + "x" * 10_000}):
            r = client.get("/metrics", headers=headers)
            assert r.status_code == 401, headers
            assert METRICS_TOKEN not in r.text
        assert "plumbline_build_info" in client.get("/metrics", headers=auth(METRICS_TOKEN)).text


def test_metrics_can_be_switched_off(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory(metrics_enabled=False)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.app.state.metrics.requests.collect()[0].samples == []  # no middleware


def test_production_serves_metrics_only_with_a_token_unless_told(tmp_path: Path) -> None:
    def prod(**kw: Any) -> Settings:
        return Settings(environment="production", nextauth_secret=SECRET,
                        data_dir=tmp_path / "d", spool_dir=tmp_path / "s", **kw)

    assert not prod().metrics_on
    assert prod(metrics_token=METRICS_TOKEN).metrics_on
    assert prod(metrics_enabled=True).metrics_on  # a private network, the operator's call
    assert Settings(data_dir=tmp_path).metrics_on  # development: on
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        Settings(metrics_token="short")


def test_metrics_are_not_rate_limited(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory(rate_limit_per_minute=2)) as client:
        assert all(client.get("/metrics").status_code == 200 for _ in range(10))


def test_several_processes_report_their_counters_together(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (docs/deploy.md), a scrape of any one API process counts
    the requests every process served."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    servers = [Server({"PLUMBLINE_DATA_DIR": str(tmp_path / "data"),
                       "PLUMBLINE_SPOOL_DIR": str(tmp_path / f"spool-{i}"),
                       "PLUMBLINE_STORAGE": "local", "RATE_LIMIT_PER_MINUTE": "0",
                       "PROMETHEUS_MULTIPROC_DIR": str(shared)}, tmp_path / f"server-{i}.log")
               for i in range(2)]
    try:
        for srv in servers:
            srv.wait_ready()
        for srv, n in zip(servers, (3, 5), strict=True):
            for _ in range(n):
                assert httpx.get(srv.url + "/api/models").status_code == 404
        for srv in servers:
            samples = parse(httpx.get(srv.url + "/metrics").text)
            assert value(samples, "plumbline_http_requests_total", method="GET",
                         route="/api/models", status="404") == 8
            assert value(samples, "plumbline_http_request_duration_seconds_count", method="GET",
                         route="/api/models", status="404") == 8
    finally:
        for srv in servers:
            srv.stop()
