"""``plumbline up`` on a fresh machine: the UI answers, the deployments and schedules are listed,
the API is healthy, and Ctrl-C stops every process it started; and a run whose process is lost
(SIGKILL, Ctrl-C on ``up``, a power cut) never holds the nightly's only slot."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
            "run-suite": [], "compaction": [], "red-team": [], "nightly-batch": [],
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



def flow_run_pid(flow_run_id: str) -> int | None:
    """The process running a flow run (the runner passes PREFECT__FLOW_RUN_ID to it)."""
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            return int(entry.name)
    return None


def db_state(home: Path, flow_run_id: str) -> tuple[str, str]:
    """A flow run's state from the SQLite database, while no server runs."""
    import sqlite3

    with sqlite3.connect(home / "prefect.db") as db:
        row = db.execute("SELECT state_type, state_name FROM flow_run WHERE id = ?",
                         (flow_run_id,)).fetchone()
    assert row is not None, flow_run_id
    return row[0], row[1]


class Stack:
    """One `plumbline up` of the test, and the Prefect API it serves."""

    def __init__(self, tmp: Path, env: dict[str, str], name: str) -> None:
        self.prefect_port, self.api_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.prefect_port}/api"
        self.proc = Proc(name, [sys.executable, "-m", "flows.cli", "up", "--prefect-port",
                                str(self.prefect_port), "--api-port", str(self.api_port)],
                         env, tmp)
        wait_until(lambda: "Plumbline is up" in self.proc.output(), name, 170, [self.proc])
        line = self.proc.output().split("pids:")[1].splitlines()[0]
        self.pids = {m[1]: int(m[2]) for m in re.finditer(r"(\S+?)=(\d+)", line)}

    def deployments(self) -> dict[str, dict[str, Any]]:
        found = httpx.post(f"{self.api}/deployments/filter", json={}, timeout=10).json()
        return {d["name"]: d for d in found}

    def start(self, deployment: str) -> str:
        dep = self.deployments()[deployment]["id"]
        return str(httpx.post(f"{self.api}/deployments/{dep}/create_flow_run", json={},
                              timeout=10).json()["id"])

    def state(self, flow_run_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.api}/flow_runs/{flow_run_id}", timeout=10).json()["state"])

    def scheduled_since(self, since: datetime) -> set[str]:
        by_id = {d["id"]: name for name, d in self.deployments().items()}
        runs = httpx.post(f"{self.api}/flow_runs/filter", json={
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}, timeout=10).json()
        return {by_id.get(r["deployment_id"], "?") for r in runs
                if datetime.fromisoformat(r["created"]) >= since}

    def logs(self, flow_run_id: str) -> list[tuple[int, str]]:
        found = httpx.post(f"{self.api}/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}, timeout=10).json()
        return [(log["level"], log["message"]) for log in found]

    def interrupt(self) -> None:
        """Ctrl-C, as in a terminal."""
        os.kill(self.proc.popen.pid, signal.SIGINT)
        try:
            self.proc.popen.wait(timeout=120)
        finally:
            self.proc.stop()

    def power_cut(self) -> None:
        """Every process of the stack SIGKILLed at once: nobody reports anything."""
        for pgid in [self.proc.popen.pid, *self.pids.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.proc.stop()


def test_interrupted_runs_never_hold_the_nightly_slot(tmp_path: Path) -> None:
    """Issue 16, item 5: a nightly interrupted by Ctrl-C on `plumbline up` stayed Running
    forever; the next nightly sat in AwaitingConcurrencySlot. Three ways to lose a run's
    process, each followed by a nightly that runs."""
    from tasks.storage.local import LocalStore
    from tests.support.demo import build_demo_history
    from tests.support.stub_server import Reply, StubLLMServer

    # History with a drifting model, so each nightly calls the drift webhook; the webhook
    # answers nothing while `hang` is set, which holds the nightly mid-flight as long as needed.
    build_demo_history(LocalStore(tmp_path / "data"), datetime.now(UTC).date(), days=14)
    hang = threading.Event()
    hang.set()
    webhook_calls: list[float] = []

    def webhook(path: str, body: Any, n: int) -> Reply:
        webhook_calls.append(time.monotonic())
        return Reply(hang=True) if hang.is_set() else Reply(200, b"{}")

    with StubLLMServer(fault=webhook) as hook:
        env = prefect_env(tmp_path, DRIFT_WEBHOOK_URL=f"{hook.base_url}/hook")
        home = Path(env["PREFECT_HOME"])

        def in_flight(stack: Stack, run: str) -> None:
            calls = len(webhook_calls)
            wait_until(lambda: len(webhook_calls) > calls, "the nightly to reach its webhook",
                       120, [stack.proc])
            assert stack.state(run)["type"] == "RUNNING"

        # 1. Its process is SIGKILLed while `up` runs: Crashed, and the next nightly runs.
        up = Stack(tmp_path, env, "up-1")
        try:
            first = up.start("nightly")
            in_flight(up, first)
            pid = flow_run_pid(first)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: up.state(first)["type"] == "CRASHED", "the killed run Crashed",
                       30, [up.proc])
            second = up.start("nightly")  # would wait for the slot behind a zombie
            in_flight(up, second)
            # 2. Ctrl-C on `up` while it runs: cancelled through Prefect, the slot released.
        finally:
            up.interrupt()
        out = up.proc.output()
        assert up.proc.popen.returncode == 0, up.proc.tail()
        assert "never awaited" not in out
        assert db_state(home, second)[0] in ("CANCELLED", "CRASHED"), db_state(home, second)

        # 3. A power cut while a nightly runs: nobody reports, the database says Running.
        up = Stack(tmp_path, env, "up-2")
        try:
            third = up.start("nightly")
            in_flight(up, third)
        finally:
            up.power_cut()
        assert db_state(home, third) == ("RUNNING", "Running")

        # The next start finds it, marks it Crashed before the banner, and the schedules are
        # live when "Plumbline is up" is printed; the next nightly runs to the end.
        since = datetime.now(UTC)
        up = Stack(tmp_path, env, "up-3")
        try:
            state = up.state(third)
            assert state["type"] == "CRASHED"
            assert "found this run in flight when it started" in state["message"]
            deployments = up.deployments()
            assert not any(d["paused"] for d in deployments.values())
            assert {"nightly", "daily-canary"} <= up.scheduled_since(since)
            hang.clear()
            fourth = up.start("nightly")
            wait_until(lambda: up.state(fourth)["type"] in ("COMPLETED", "FAILED", "CRASHED"),
                       "the next nightly to finish", 120, [up.proc])
            assert up.state(fourth)["type"] == "COMPLETED"
            cancel_a_run_from_the_ui(up)
        finally:
            up.interrupt()
        assert "never awaited" not in up.proc.output()


def cancel_a_run_from_the_ui(up: Stack) -> None:
    """Issue 16, item 11: Cancel on a 40-shard run logged 40 "Crash detected!" lines and the
    shards kept calling until the process was killed 30 s later."""
    models = ["fake/stable", "fake/drifting", "fake/flaky", "fake/drifting@2026-01-01",
              "fake/drifting@2025-01-01"]
    dep = up.deployments()["run-suite"]["id"]
    run = str(httpx.post(f"{up.api}/deployments/{dep}/create_flow_run", json={"parameters": {
        "params": {"suite": "smoke", "models": models, "samples": 20, "shard_size": 1,
                   "rpm_limit": 600}}}, timeout=10).json()["id"])
    wait_until(lambda: any("cell(s) to call" in m for _, m in up.logs(run)),
               "the run to start calling", 120, [up.proc])
    time.sleep(2)
    asked = time.monotonic()
    httpx.post(f"{up.api}/flow_runs/{run}/set_state", json={
        "state": {"type": "CANCELLING", "name": "Cancelling"}}, timeout=10)
    wait_until(lambda: up.state(run)["type"] == "CANCELLED", "the run to be cancelled", 60,
               [up.proc])
    assert time.monotonic() - asked < 20  # the shards stopped; nobody had to be killed
    time.sleep(2)  # the last log lines
    logs = up.logs(run)
    assert not any("Crash detected" in m for _, m in logs), [m for _, m in logs if "Crash" in m]
    warnings = [m for level, m in logs if level >= 30]
    assert len(warnings) == 1 and " cancelled: its shards stopped; the " in warnings[0], warnings
