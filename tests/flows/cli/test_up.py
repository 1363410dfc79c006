"""``plumbline up`` on a fresh machine: the UI answers, the deployments and schedules are listed,
the API is healthy, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.deployments.support import Proc, free_port, prefect_env, wait_until
from tests.support.helpers import group_alive

pytestmark = pytest.mark.integration


def test_up_serves_ui_deployments_schedules_and_api_then_stops_all(tmp_path: Path) -> None:
    prefect_port, api_port = free_port(), free_port()
    # A fresh machine: empty PREFECT_HOME, no PREFECT_API_URL, no data yet.
    env = prefect_env(tmp_path)
    up = Proc("up", [sys.executable, "-m", "flows.cli", "up", "--prefect-port",
                     str(prefect_port), "--api-port", str(api_port)], env, tmp_path)
    pids: dict[str, int] = {}
    try:
        wait_until(lambda: "Plumbline is up" in up.output(), "plumbline up", 170, [up])
        banner = up.output()
        pids = {m[1]: int(m[2]) for m in re.finditer(r"(\S+?)=(\d+)", banner.split("pids:")[1]
                                                        .splitlines()[0])}
        assert set(pids) == {"prefect-server", "serve", "api"}
        prefect = f"http://127.0.0.1:{prefect_port}"
        assert prefect in banner and f"http://127.0.0.1:{api_port}" in banner

        # The UI: the app's HTML at / and at a client-side route, as a browser asks for them.
        for path in ("/", "/deployments"):
            resp = httpx.get(prefect + path, timeout=10, follow_redirects=True,
                             headers={"Accept": "text/html,application/xhtml+xml"})
            assert resp.status_code == 200
            assert resp.text.lstrip().startswith("<!DOCTYPE html>")
            # ... and the app's bundle that page loads is served too.
            bundle = re.search(r'<script[^>]+src="([^"]+\.js)"', resp.text)
            assert bundle is not None, resp.text[:500]
            js = httpx.get(prefect + bundle[1], timeout=10)
            assert js.status_code == 200 and "javascript" in js.headers["content-type"]
            assert len(js.content) > 1000

        deployments = httpx.post(f"{prefect}/api/deployments/filter", json={}, timeout=10).json()
        schedules = {d["name"]: [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"])
                                 for s in d["schedules"]] for d in deployments}
        assert schedules == {
            "run-suite": [], "compaction": [],
            "daily-canary": [("0 6 * * *", "UTC", True)],
            "nightly": [("0 2 * * *", "UTC", True)],
        }
        assert not any(d["paused"] for d in deployments)
        # Prefect's scheduler has turned the crons into upcoming runs: the schedule is live.
        by_id = {d["id"]: d["name"] for d in deployments}

        def scheduled() -> set[str]:
            runs = httpx.post(f"{prefect}/api/flow_runs/filter", json={
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}, timeout=10).json()
            return {by_id.get(r["deployment_id"], "?") for r in runs}

        wait_until(lambda: {"daily-canary", "nightly"} <= scheduled(), "scheduled runs", 60, [up])

        health = httpx.get(f"http://127.0.0.1:{api_port}/api/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        if up.alive():
            os.kill(up.popen.pid, signal.SIGINT)
            try:
                up.popen.wait(timeout=90)
            finally:
                up.stop()  # only does anything if SIGINT did not stop it
    assert up.popen.returncode == 0, up.tail()
    assert "Stopped." in up.output()
    # Every child ran in its own process group; none of those groups has a process left.
    time.sleep(0.5)
    assert [name for name, pgid in pids.items() if group_alive(pgid)] == []

