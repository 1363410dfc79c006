"""One big run and one nightly spread over two workers, against a Prefect server on PostgreSQL.

The scale-out setup of docs/deploy.md on one machine: a PostgreSQL server (Debian's binaries,
initdb into a temp folder, started by the test as an unprivileged user), ``prefect server
start`` on it, the ``plumbline`` process work pool, ``prefect deploy --all`` and two ``prefect
worker start`` processes with different names (two hosts). A ``run-suite`` run of 4,000 offline
cells spreads itself (automatically: it came from a deployment on a pool with two online
workers) into child runs; a nightly over 8 days spreads its batches into ``nightly-batch``
children. Shown: both workers ran children (worker logs name the child runs; their process ids
differ), every cell is stored exactly once, the parent's summary counts every row, every day is
aggregated once.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from tasks.identity import SOURCE_SCHEDULED, USER_SCHEDULER
from tasks.records.io import read_records, write_records
from tasks.storage.layout import RAW
from tasks.storage.local import LocalStore
from tasks.summaries.aggregate import read_daily
from tests.deployments.support import Proc, free_port, prefect, prefect_env, wait_until
from tests.support.helpers import record, write_suite

pytestmark = pytest.mark.integration

MODELS = ["fake/stable", "fake/drifting"]
CASES = 1000
SAMPLES = 2  # 2 models x 1,000 cases x 2 samples = 4,000 cells: 4 parts of 1,000
NIGHTLY_DAYS = 8


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_db_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its commands as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    bindir = _pg_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing; .ci/run installs `postgresql`")
        pytest.skip("PostgreSQL server binaries are not installed (Debian: apt-get install "
                    "postgresql)")
    # Not under pytest's tmp folder: the database user must be able to reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="plumbline-pg-"))
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(folder, pg.pw_uid, pg.pw_gid)
    data, port = folder / "data", free_port()
    subprocess.run(_as_db_user([str(bindir / "initdb"), "-D", str(data), "-U", "prefect",
                                "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    subprocess.run(_as_db_user([
        str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "pg.log"), "-w", "-t", "60",
        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off",
        "start"]), check=True, capture_output=True, timeout=90)
    try:
        subprocess.run(_as_db_user([str(bindir / "createdb"), "-h", "127.0.0.1", "-p",
                                    str(port), "-U", "prefect", "prefect"]),
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(_as_db_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                                    "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Server on PostgreSQL, the deployments on the pool, two workers; stopped in that order."""
    tmp = tmp_path_factory.mktemp("spread")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(tmp, api_url=url, PREFECT_API_DATABASE_CONNECTION_URL=postgres,
                      PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_HEARTBEAT_SECONDS="5")
    procs: list[Proc] = []
    try:
        procs.append(Proc("prefect-server", [sys.executable, "-m", "prefect", "server", "start",
                                             "--host", "127.0.0.1", "--port", str(port),
                                             "--no-ui"], env, tmp))
        wait_until(lambda: _ok(f"{url}/health"), "prefect server on PostgreSQL", 150, procs)
        prefect("work-pool", "create", "plumbline", "--type", "process", env=env)
        prefect("deploy", "--all", env=env)
        workers = []
        for name in ("it-host-a", "it-host-b"):
            w = Proc(name, [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                            "plumbline", "--name", name, "--limit", "2"], env, tmp)
            procs.append(w)
            workers.append(w)
        wait_until(lambda: _online(url) >= 2, "two online workers", 90, procs)
        yield {"url": url, "env": env, "tmp": tmp, "workers": workers,
               "data": Path(env["PLUMBLINE_DATA_DIR"])}
    finally:
        for p in reversed(procs):  # workers before the server
            p.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _online(url: str) -> int:
    resp = httpx.post(f"{url}/work_pools/plumbline/workers/filter", json={}, timeout=10)
    return sum(w["status"] == "ONLINE" for w in resp.json()) if resp.status_code == 200 else 0


def _start(url: str, deployment: str, fields: dict[str, Any]) -> UUID:
    """Start a deployment's run; the fields go where the flow's signature takes them."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        dep = c.read_deployment_by_name(deployment)
        props = dep.parameter_openapi_schema.get("properties", {})
        params = {"params": fields} if set(props) == {"params"} else fields
        return c.create_flow_run_from_deployment(dep.id, parameters=params).id


def _wait(url: str, run_id: UUID, workers: list[Proc], timeout: float = 240) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        deadline = time.monotonic() + timeout
        run = c.read_flow_run(run_id)
        while time.monotonic() < deadline and not (run.state and run.state.is_final()):
            for w in workers:
                assert w.alive(), f"{w.name} exited:\n{w.tail()}"
            time.sleep(1)
            run = c.read_flow_run(run_id)
    logs = "\n".join(f"--- {w.name}:\n{w.tail(60)}" for w in workers)
    assert run.state is not None and run.state.is_completed(), f"{run.state}\n{logs}"
    return run


def _children(url: str, parent: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        return c.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))


def _artifact(url: str, flow_run: UUID, key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run])))
    (art,) = [a for a in arts if a.key == key]
    return art.data


def _rows(store: LocalStore, run_id: str) -> list[dict[str, Any]]:
    table = read_records(store, [o.key for o in store.list(RAW + "/")])
    return [r for r in table.to_pylist() if r["run_id"] == run_id]


def _who_ran(stack: dict[str, Any], children: list[Any]) -> dict[str, set[str]]:
    """Which worker submitted each child, from the workers' own logs; and the children's pids."""
    ran: dict[str, set[str]] = {}
    for w in stack["workers"]:
        out = w.output()
        ran[w.name] = {str(c.id) for c in children if str(c.id) in out}
    return ran


def test_a_big_run_and_a_nightly_spread_over_two_workers(stack: dict[str, Any],
                                                         tmp_path: Path) -> None:
    url, data = stack["url"], stack["data"]
    cases = [{"id": f"c-{i:04d}", "input": f"Repeat after me: token{i}", "ideal": [f"token{i}"],
              "assertion": {"type": "contains"}} for i in range(CASES)]
    suite_dir = write_suite(tmp_path / "big-suite", cases)
    fields = {"suite": str(suite_dir), "models": MODELS, "samples": SAMPLES, "run_id": "spread-1",
              "concurrency": 64}
    started = time.monotonic()
    parent = _wait(url, _start(url, "run-suite/run-suite", fields), stack["workers"])
    children = _children(url, parent.id)
    elapsed = time.monotonic() - started

    # Spread automatically into 4 parts (2 online workers x 2), each a completed child run.
    assert len(children) == 4, [c.name for c in children]
    assert all(c.state.is_completed() for c in children)
    assert sorted(c.name for c in children) == [f"spread-1 part {i}/4" for i in range(1, 5)]
    ran = _who_ran(stack, children)
    assert all(ran.values()), ran  # each worker executed at least one part
    assert set().union(*ran.values()) == {str(c.id) for c in children}
    pids = {c.infrastructure_pid for c in children}
    assert None not in pids and len(pids) == 4  # four processes, on two workers

    # Every cell stored exactly once, and the parent's summary counts them all.
    store = LocalStore(data)
    rows = _rows(store, "spread-1")
    cells = {(r["model_id"], r["prompt_id"], r["sample_idx"]) for r in rows}
    assert len(rows) == len(cells) == len(MODELS) * CASES * SAMPLES
    summary = _artifact(url, parent.id, "run-summary")
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert {s["model_id"]: s["rows"] for s in summary} == {m: CASES * SAMPLES for m in MODELS}
    assert _artifact(url, parent.id, "run-progress") == 100.0
    print(f"run-suite: 4,000 cells over {len(children)} child runs in {elapsed:.1f} s")

    # The same run id again resumes it: nothing is left, so nothing spreads or is called, and
    # its summary still counts every row once.
    again = _wait(url, _start(url, "run-suite/run-suite", fields), stack["workers"])
    assert _children(url, again.id) == []
    assert len(_rows(store, "spread-1")) == len(rows)
    summary = _artifact(url, again.id, "run-summary")
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert {s["model_id"]: s["rows"] for s in summary} == {m: CASES * SAMPLES for m in MODELS}

    # The nightly over 8 days of raw data (+ today's run): its batches spread over both workers.
    first = date(2026, 10, 1)
    for d in range(NIGHTLY_DAYS):
        day = first + timedelta(days=d)
        write_records(store, [record(timestamp=datetime(day.year, day.month, day.day, 6,
                                                        tzinfo=UTC) + timedelta(seconds=i),
                                     model_id=m, prompt_id=f"p-{i}", run_id=f"n-{d}")
                              for m in MODELS for i in range(5)],
                      user_id=USER_SCHEDULER, source=SOURCE_SCHEDULED)
    nightly = _wait(url, _start(url, "nightly/nightly", {"workers": 4}), stack["workers"])
    batches = _children(url, nightly.id)
    assert len(batches) == 4 and all(b.state.is_completed() for b in batches)
    ran = _who_ran(stack, batches)
    assert all(ran.values()), ran
    assert len({b.infrastructure_pid for b in batches}) == 4
    days = [first + timedelta(days=d) for d in range(NIGHTLY_DAYS)]
    daily = read_daily(store, days, columns=["date", "model_id", "prompt_id", "rows"])
    # Each day aggregated once: one summary row per (day, model, prompt), counting its 1 row.
    assert daily.height == NIGHTLY_DAYS * len(MODELS) * 5
    assert daily.select(["date", "model_id", "prompt_id"]).unique().height == daily.height
    assert daily["rows"].sum() == NIGHTLY_DAYS * len(MODELS) * 5
    status = json.loads(store.get("summaries/latest/nightly.json"))
    assert status["aggregated_days"] == NIGHTLY_DAYS + 1  # the 8 days and today's run
    with contextlib.suppress(KeyError):
        assert status["rows_aggregated"] >= NIGHTLY_DAYS * len(MODELS) * 5
