"""The Grafana dashboard and the Prometheus alert rules in deployments/: well-formed, with the
alerts the operator needs, and naming only metrics that ``GET /metrics`` exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from api import create_app
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tests.api.conftest import pramana_payload
from tests.support.metrics import publish_summaries, scrape

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deployments" / "grafana" / "plumbline.json"
ALERTS = ROOT / "deployments" / "prometheus" / "alerts.yml"

_METRIC_RE = re.compile(r"\bplumbline_[a-zA-Z0-9_]+")


def _dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "query") and isinstance(v, str):
                yield v
            else:
                yield from _dashboard_exprs(v)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_exprs(item)


def test_dashboard_and_alerts_use_only_exposed_metrics(tmp_path: Path, store: LocalStore) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= r.keys() for r in alerts)
    names = {r["alert"] for r in alerts}
    assert {"PlumblineNightlyStale", "PlumblineProviderErrorRate", "PlumblineSpoolBacklog",
            "PlumblineSpoolFlushFailing", "PlumblineHigh5xxRate"} <= names
    exprs = [*_dashboard_exprs(dashboard), *(r["expr"] for r in alerts)]
    assert len(exprs) > 10
    referenced = {m for e in exprs for m in _METRIC_RE.findall(e)}
    assert {"plumbline_http_request_duration_seconds_bucket", "plumbline_nightly_age_seconds",
            "plumbline_nightly_provider_error_rate", "plumbline_spool_flush_failures_total",
            "plumbline_model_verdict"} <= referenced

    publish_summaries(store)
    app = create_app(Settings(data_dir=tmp_path / "data", spool_dir=tmp_path / "spool"), store)
    with TestClient(app) as client:
        client.get("/api/models")
        client.post("/api/submit", json=pramana_payload())
        exposed = {name for name, _ in scrape(client)}
    assert referenced - exposed == set()
    # And the nightly alert fires on the threshold the issue names.
    stale = next(r for r in alerts if r["alert"] == "PlumblineNightlyStale")
    assert "26" in stale["expr"] and "plumbline_nightly_age_seconds" in stale["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    """Prometheus' own checker, where installed (Debian: apt-get install prometheus)."""
    out = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
