"""prefect.yaml against a real Prefect server: deploy, a process worker, a run-suite run, rows.

The scale-out path end to end on one machine: ``prefect server start`` on a temporary SQLite
database, ``prefect work-pool create``, ``prefect deploy --all`` from the project's prefect.yaml,
``prefect worker start`` from another working directory (so the pull step must bring the worker
to the project), then a ``run-suite`` run with parameters created through Prefect's client.
The pool's job template takes a setting from a Secret block, as docs/deploy.md recommends.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.catalog import load_suite
from tasks.records.io import read_records
from tasks.storage.layout import RAW
from tasks.storage.local import LocalStore
from tests.deployments.support import Proc, free_port, prefect, prefect_env, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(tmp, api_url=url)
    proc = Proc("prefect-server", [sys.executable, "-m", "prefect", "server", "start",
                                   "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                env, tmp)
    procs = [proc]
    try:
        wait_until(lambda: _ok(f"{url}/health"), "prefect server", 150, [proc])
        yield {"url": url, "env": env, "tmp": tmp, "procs": procs}
    finally:
        # Workers before the server: a worker whose server is gone hangs in its shutdown.
        for p in reversed(procs):
            p.stop()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _deployments(url: str) -> dict[str, dict[str, Any]]:
    resp = httpx.post(f"{url}/deployments/filter", json={}, timeout=10)
    resp.raise_for_status()
    return {d["name"]: d for d in resp.json()}


def test_deploy_all_then_a_worker_runs_run_suite(server: dict[str, Any]) -> None:
    url, env, tmp = server["url"], server["env"], server["tmp"]
    prefect("work-pool", "create", "plumbline", "--type", "process", env=env)
    # Secrets as blocks (docs/deploy.md): the pool's job template names a Secret block, which the
    # worker resolves when it starts each run. Here the "secret" is the data folder, so the rows
    # landing there prove the worker resolved it.
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    block_dir = tmp / "data-from-block"
    with temporary_settings(updates={PREFECT_API_URL: url}):
        Secret(value=str(block_dir)).save("plumbline-data-dir", overwrite=True)
    template = json.loads(prefect("work-pool", "get-default-base-job-template", "--type",
                                  "process", env=env))
    template["variables"]["properties"]["env"]["default"] = {
        "PLUMBLINE_DATA_DIR": "{{ prefect.blocks.secret.plumbline-data-dir }}"}
    (tmp / "pool.json").write_text(json.dumps(template))
    prefect("work-pool", "update", "plumbline", "--base-job-template", str(tmp / "pool.json"),
            env=env)
    out = prefect("deploy", "--all", env=env)
    assert "run-suite/run-suite" in out

    deployed = _deployments(url)
    assert set(deployed) == {"run-suite", "daily-canary", "nightly", "compaction", "red-team",
                             "nightly-batch"}
    assert all(d["work_pool_name"] == "plumbline" for d in deployed.values())
    crons = {name: [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in d["schedules"]]
             for name, d in deployed.items()}
    assert crons == {"run-suite": [], "compaction": [], "red-team": [], "nightly-batch": [],
                     "daily-canary": [("0 6 * * *", "UTC")],
                     "nightly": [("0 2 * * *", "UTC")]}
    assert deployed["nightly"]["global_concurrency_limit"]["limit"] == 1
    # The UI's form: typed fields with their descriptions.
    schema = deployed["run-suite"]["parameter_openapi_schema"]
    fields = schema["definitions"]["RunSuiteParams"]["properties"]
    assert {"suite", "models", "samples", "temperature", "seed", "max_tokens", "run_id"} <= set(
        fields)
    assert all(f.get("description") for f in fields.values())

    # A worker somewhere else: only the pull step can take it to the project's code.
    elsewhere = tmp / "worker-cwd"
    elsewhere.mkdir()
    worker = Proc("worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool",
                             "plumbline", "--name", "it-worker", "--limit", "2"],
                  env, tmp, cwd=elsewhere)
    server["procs"].append(worker)

    from prefect.client.orchestration import get_client

    params = {"params": {"suite": "smoke", "models": ["fake/stable", "fake/drifting"],
                         "samples": 2, "seed": 7, "run_id": "it-deploy-1"}}
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as c:
        dep = c.read_deployment_by_name("run-suite/run-suite")
        run = c.create_flow_run_from_deployment(dep.id, parameters=params)
        deadline = time.monotonic() + 150
        state = c.read_flow_run(run.id).state
        while time.monotonic() < deadline and not (state and state.is_final()):
            assert worker.alive(), f"worker exited:\n{worker.tail()}"
            time.sleep(1)
            state = c.read_flow_run(run.id).state
    assert state is not None and state.is_completed(), (
        f"run ended {state}\n--- worker:\n{worker.tail(80)}")

    assert not Path(env["PLUMBLINE_DATA_DIR"]).exists()  # the worker's own setting lost
    store = LocalStore(block_dir)
    keys = [o.key for o in store.list(RAW + "/")]
    rows = read_records(store, keys).to_pylist()
    mine = [r for r in rows if r["run_id"] == "it-deploy-1"]
    # Every case x 2 models x 2 samples, every row scored, the seed as asked.
    assert len(mine) == len(load_suite("smoke").cases) * 2 * 2
    assert {r["model_id"] for r in mine} == {"fake/stable", "fake/drifting"}
    assert {r["sample_idx"] for r in mine} == {0, 1}
    assert {r["seed"] for r in mine} == {7}
    assert all(r["error"] is None and r["passed"] is not None for r in mine)
