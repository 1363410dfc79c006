"""Runs whose process is gone never hold a slot (issue 16, item 5), against a real Prefect server:
the heartbeat automation crashes a silent run and spares live and finished ones; ``crash_orphans``
frees a one-at-a-time deployment's slot so the next run starts."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import StateType
from prefect.states import Completed, Pending, Running, State

from deployments.liveness import (
    AUTOMATION_NAME,
    crash_orphans,
    ensure_zombie_automation,
)
from tests.deployments.support import Proc, free_port, prefect_env, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("liveness")
    port = free_port()
    proc = Proc("prefect-server", [sys.executable, "-m", "prefect", "server", "start",
                                   "--host", "127.0.0.1", "--port", str(port)],
                prefect_env(tmp), tmp)
    url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, "the Prefect server", 120, [proc])
        yield url
    finally:
        proc.stop()


def deployment(client: SyncPrefectClient, name: str, tags: list[str],
               limit: int | None = None) -> UUID:
    flow_id = client.create_flow_from_name(f"{name}-{uuid.uuid4().hex[:6]}")
    return client.create_deployment(flow_id, name, tags=tags, concurrency_limit=limit)


def run_in(client: SyncPrefectClient, deployment_id: UUID, state: State) -> UUID:
    run = client.create_flow_run_from_deployment(deployment_id)
    client.set_flow_run_state(run.id, state, force=True)
    return run.id


def heartbeat(url: str, flow_run_id: UUID, deployment_id: UUID) -> None:
    """The event a served flow run's engine sends every HEARTBEAT_SECONDS."""
    event = {
        "occurred": datetime.now(UTC).isoformat(), "event": "prefect.flow-run.heartbeat",
        "id": str(uuid.uuid4()),
        "resource": {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"},
        "related": [{"prefect.resource.id": f"prefect.deployment.{deployment_id}",
                     "prefect.resource.role": "deployment"}],
        "payload": {},
    }
    resp = httpx.post(f"{url}/events", json=[event], timeout=10)
    assert resp.status_code == 204, resp.text


def state_of(client: SyncPrefectClient, flow_run_id: UUID) -> Any:
    state = client.read_flow_run(flow_run_id).state
    assert state is not None
    return state


def test_a_run_whose_heartbeat_stops_is_crashed_and_live_or_finished_ones_are_not(
    server: str,
) -> None:
    with SyncPrefectClient(server) as client:
        dep = deployment(client, "nightly", ["plumbline"], limit=1)
        ensure_zombie_automation(client, [dep], within_s=12)
        ensure_zombie_automation(client, [dep], within_s=12)  # again at the next start: updated
        assert len(client.read_automations_by_name(AUTOMATION_NAME)) == 1
        time.sleep(5)  # the trigger service picks the automation up
        silent = run_in(client, dep, Running())
        alive = run_in(client, dep, Running())
        cancelled_zombie = run_in(client, dep, Running())
        finished = run_in(client, dep, Running())
        for run in (silent, alive, cancelled_zombie, finished):
            heartbeat(server, run, dep)
        # Someone presses Cancel on a run whose process is gone: nobody is there to cancel it.
        client.set_flow_run_state(cancelled_zombie, State(type=StateType.CANCELLING), force=True)
        client.set_flow_run_state(finished, Completed(), force=True)

        started = time.monotonic()
        while time.monotonic() - started < 90:
            heartbeat(server, alive, dep)
            if (state_of(client, silent).is_crashed()
                    and state_of(client, cancelled_zombie).is_crashed()):
                break
            time.sleep(3)
        took = time.monotonic() - started
        assert state_of(client, silent).is_crashed(), state_of(client, silent)
        assert "No heartbeat for 12 s" in state_of(client, silent).message
        assert state_of(client, cancelled_zombie).is_crashed()
        assert took < 60  # bounded: the window plus the server's evaluation period
        assert state_of(client, alive).is_running()
        assert state_of(client, finished).is_completed()


def test_crash_orphans_frees_the_slot_so_the_next_run_starts(server: str) -> None:
    with SyncPrefectClient(server) as client:
        dep = deployment(client, "daily-canary", ["plumbline", "scheduled"], limit=1)
        other = deployment(client, "someone-elses", ["theirs"])
        # A run takes the deployment's only slot (Pending, through orchestration), starts, and
        # its process dies: it stays Running.
        zombie = client.create_flow_run_from_deployment(dep).id
        assert client.set_flow_run_state(zombie, Pending()).status.value == "ACCEPT"
        client.set_flow_run_state(zombie, Running())
        # Its child run (a run-suite of the canary), also left Running.
        parent_task = httpx.post(f"{server}/task_runs/", json={
            "flow_run_id": str(zombie), "task_key": "run-suite", "dynamic_key": "0",
            "name": "run-suite-0"}, timeout=10).json()["id"]
        child = httpx.post(f"{server}/flow_runs/", json={
            "flow_id": str(client.read_flow_run(zombie).flow_id),
            "parent_task_run_id": parent_task, "state": {"type": "RUNNING"}},
            timeout=10).json()["id"]
        theirs = run_in(client, other, Running())

        blocked = client.create_flow_run_from_deployment(dep).id
        refused = client.set_flow_run_state(blocked, Pending())
        assert refused.state is not None and refused.state.name == "AwaitingConcurrencySlot"

        crashed = crash_orphans(client, ["daily-canary"], "up stopped")
        assert {r.id for r in crashed} == {zombie, UUID(child)}
        for run in (zombie, UUID(child)):
            assert state_of(client, run).is_crashed()
            assert state_of(client, run).message == "up stopped"
        assert state_of(client, theirs).is_running()  # not ours: never touched
        # The slot is free: the next run of the deployment starts.
        assert client.set_flow_run_state(blocked, Pending()).status.value == "ACCEPT"


def test_crash_orphans_on_a_server_without_our_deployments_does_nothing(server: str) -> None:
    with SyncPrefectClient(server) as client:
        assert crash_orphans(client, ["compaction"], "nothing to do") == []


def test_python_m_deployments_liveness_installs_it_for_a_work_pool(
    server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import subprocess

    env = prefect_env(tmp_path_factory.mktemp("cli"), api_url=server)
    out = subprocess.run([sys.executable, "-m", "deployments.liveness"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"automation {AUTOMATION_NAME!r} covers" in out.stdout
    with SyncPrefectClient(server) as client:
        (automation,) = client.read_automations_by_name(AUTOMATION_NAME)
    assert automation.trigger.within.total_seconds() == 90  # type: ignore[union-attr]
