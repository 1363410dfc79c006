"""Spreading one flow run over workers: child flow runs of a deployment on the work pool.

A big ``run-suite`` run, or a nightly with many days to aggregate, is cut into parts and each
part becomes a child flow run of a Plumbline deployment (Prefect's ``run_deployment`` with
``as_subflow=True``): workers polling the ``plumbline`` work pool pick the children up like any
other run, the Prefect UI shows them under the parent, and the parent waits for them, merges
their progress into its own progress artifact and summarises from the store. Chosen over a
distributed task runner (``prefect-dask``, ``prefect-ray``) because the work pool and its workers
are already what a scale-out deployment runs, with their secrets, code and concurrency limits;
a Dask or Ray cluster would be a second one to run and secure (measured in docs/deploy.md).

When to spread (``fan_out``):

- asked for (``workers`` ≥ 2): always, through the named deployment, wherever it runs (a work
  pool, or ``plumbline serve``'s process, which runs each child as a subprocess);
- ``workers`` 1: never;
- ``workers`` None (automatic): only when this flow run came from a deployment on a work pool
  with at least two online workers, and the work is big enough that each part pays for a child
  run's fixed cost; then ``PARTS_PER_WORKER`` parts per online worker. A run of ``plumbline
  run`` (no deployment) or of ``plumbline up`` (served, no pool) asks the API nothing and runs
  in-process as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
    WorkerFilter,
    WorkerFilterStatus,
)
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment as current_deployment
from prefect.states import Cancelling
from pydantic import BaseModel, Field

from tasks.errors import PlumblineError
from tasks.run.lease import default_holder
from tasks.run.progress import PROGRESS

# Parts per online worker when spreading automatically: more than one, so that a worker also
# running the parent, or a slower host, does not hold the whole run back.
PARTS_PER_WORKER = 2
# How often the parent reads its children's states and progress.
POLL_S = 2.0


class RunPart(BaseModel):
    """Which part of a spread run a child flow run works on (set by the parent, not by hand)."""

    index: int = Field(ge=1, description="This part's number, from 1.")
    of: int = Field(ge=1, description="How many parts the run was cut into.")
    start: int = Field(ge=0, description="First case (0-based) of the part.")
    stop: int = Field(ge=1, description="One past the part's last case.")
    lease_token: str = Field(pattern=r"[0-9a-f]{32}",
                             description="The parent's lease token on the run id.")


@dataclass(frozen=True)
class Target:
    """The deployment children are created from, and what its work pool offers."""

    deployment_id: UUID
    name: str
    work_pool: str | None
    online_workers: int


def where() -> str:
    """This process as a person finds it in the logs: the worker that started it, pid, host."""
    worker = os.environ.get("PREFECT__WORKER_NAME")
    return (f"worker {worker!r}, " if worker else "") + default_holder()


def online_workers(pool: str | None) -> int:
    """Workers of ``pool`` whose heartbeat the server saw recently (0 without a pool)."""
    if not pool:
        return 0
    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(
            pool, worker_filter=WorkerFilter(status=WorkerFilterStatus(any_=["ONLINE"])))
    return len(workers)


def current_deployment_id() -> UUID | None:
    """The deployment this flow run came from (None: run in a terminal, or not in a flow run).

    Read from the run's own context: ``prefect.runtime.deployment.id`` asks the API for the
    flow run instead (a new client and a round trip, ~35 ms of every ``plumbline run``).
    """
    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        return ctx.flow_run.deployment_id
    found = current_deployment.id  # outside a run's context: from PREFECT__FLOW_RUN_ID
    return UUID(str(found)) if found else None


def find_target(name: str, *, prefer_current: bool) -> Target | None:
    """The deployment ``name`` ("flow/deployment"), or this flow run's own deployment when
    ``prefer_current`` and there is one; None when there is neither."""
    with get_client(sync_client=True) as client:
        dep = None
        if prefer_current and (this := current_deployment_id()) is not None:
            dep = client.read_deployment(this)
        if dep is None:
            try:
                dep = client.read_deployment_by_name(name)
            except ObjectNotFound:
                return None
    return Target(dep.id, name, dep.work_pool_name, online_workers(dep.work_pool_name))


def fan_out(requested: int | None, *, deployment: str, units: int, min_units: int,
            prefer_current: bool = False) -> tuple[int, Target | None]:
    """How many child runs to spread ``units`` of work over (0: run in-process), and where.

    ``requested``: the ``workers`` parameter (None: automatic, see the module docstring);
    ``min_units``: the least work a part must have for a child run to pay when automatic.
    Raises ``PlumblineError`` when spreading is asked for and the deployment does not exist.
    """
    if requested is not None and requested < 1:
        raise PlumblineError(f"workers must be 1 or more (1: no spreading), got {requested}")
    if requested == 1 or units < 2:
        return 0, None
    if requested is None:
        # Only a run that itself came from a deployment can be on a pool: asking the API
        # anything otherwise would cost `plumbline run` a round trip for nothing.
        if units < 2 * min_units or current_deployment_id() is None:
            return 0, None
        target = find_target(deployment, prefer_current=prefer_current)
        if target is None or target.work_pool is None or target.online_workers < 2:
            return 0, None
        parts = min(target.online_workers * PARTS_PER_WORKER, units // min_units)
        return (parts, target) if parts >= 2 else (0, None)
    target = find_target(deployment, prefer_current=prefer_current)
    if target is None:
        raise PlumblineError(
            f"workers={requested} spreads the work over child flow runs of the {deployment!r} "
            "deployment, and this Prefect API has none: create it (`prefect deploy --all` on "
            "the work pool, or `plumbline serve` / `plumbline up`), or leave workers empty")
    return min(requested, units), target


def start_children(target: Target, parameters: Sequence[dict[str, Any]], names: Sequence[str],
                   keys: Sequence[str]) -> list[FlowRun]:
    """Create one child flow run per parameter set, linked under the current flow run.

    ``keys`` are idempotency keys: a parent retried by Prefect finds its children again instead
    of creating a second set.
    """
    return [
        run_deployment(target.deployment_id, parameters=p, timeout=0, as_subflow=True,
                       flow_run_name=n, idempotency_key=k, tags=["plumbline-part"])
        for p, n, k in zip(parameters, names, keys, strict=True)
    ]


def follow_children(
    children: Sequence[FlowRun], on_progress: Callable[[dict[UUID, float]], None] | None = None,
    poll: float = POLL_S,
) -> list[FlowRun]:
    """Wait until every child run is final; report each one's progress (percent) as it moves.

    A child's progress is its own ``run-progress`` artifact (100 once it completed). If the wait
    is interrupted (the parent cancelled, Ctrl-C, an error), the children still running are
    cancelled before the exception goes on: a child never works on for a parent that is gone.
    """
    ids = [c.id for c in children]
    try:
        while True:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
                arts = client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=ids),
                    type=ArtifactFilterType(any_=["progress"])))
            progress = {a.flow_run_id: float(a.data) for a in arts  # type: ignore[arg-type]
                        if a.flow_run_id is not None and isinstance(a.data, int | float)}
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            for r in final:
                if r.state is not None and r.state.is_completed():
                    progress[r.id] = 100.0
            if on_progress is not None:
                on_progress(progress)
            if len(final) == len(ids):
                by_id = {r.id: r for r in runs}
                return [by_id[i] for i in ids]
            time.sleep(poll)
    except BaseException:
        cancel_children(ids)
        raise


def cancel_children(ids: Sequence[UUID]) -> None:
    """Ask Prefect to cancel the children that are not final yet (their workers stop them)."""
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=list(ids))))
            for r in runs:
                if r.state is None or not r.state.is_final():
                    client.set_flow_run_state(r.id, Cancelling(), force=True)
    except Exception as exc:  # the parent's own error is the one to report
        get_run_logger().warning("could not cancel the child runs: %s", exc)


def run_parts(target: Target, run_id: str, parameters: Sequence[dict[str, Any]],
              todo: Sequence[int], key: str) -> list[FlowRun]:
    """Run one child per parameter set, named "<run_id> part i/n", and wait for them all.

    ``todo``: each part's cells, to weigh its progress in the parent's ``run-progress``
    artifact (and on the process's progress board, which the CLI's bar follows). ``key`` makes
    the children's idempotency keys. Raises ``PlumblineError`` naming every part that did not
    complete (the rows of the others stay stored: running the run id again resumes it).
    """
    n, total = len(parameters), sum(todo)
    names = [f"{run_id} part {i + 1}/{n}" for i in range(n)]
    PROGRESS.start(run_id, total)
    shown = 0.0
    try:
        progress_id = create_progress_artifact(
            progress=0.0, key="run-progress",
            description=f"Run `{run_id}`: {total} call(s) over {n} child run(s)")
        children = start_children(target, parameters, names,
                                  [f"{key}:part-{i + 1}-of-{n}" for i in range(n)])

        def merge(percent: dict[UUID, float]) -> None:
            nonlocal shown
            done = sum(t * percent.get(c.id, 0.0) / 100.0
                       for t, c in zip(todo, children, strict=True))
            live, _ = PROGRESS.get(run_id)
            if int(done) > live:
                PROGRESS.advance(run_id, int(done) - live)
            now = min(100.0, 100.0 * done / total) if total else 100.0
            if now - shown >= 1.0 or (now == 100.0 and shown < 100.0):
                shown = now
                update_progress_artifact(progress_id, shown)

        ended = follow_children(children, merge)
    finally:
        PROGRESS.forget(run_id)
    failed = failures(ended)
    if failed:
        raise PlumblineError(
            f"run {run_id!r}: {len(failed)} of {n} part(s) did not complete ("
            + "; ".join(failed) + "); the rows of the others are kept: run the same run id "
            "again to finish it")
    return ended


def failures(children: Sequence[FlowRun]) -> list[str]:
    """One line per child that did not complete: its name, state and message."""
    return [f"{c.name} ({c.id}): {c.state.name if c.state else 'no state'}"
            + (f": {c.state.message}" if c.state and c.state.message else "")
            for c in children if c.state is None or not c.state.is_completed()]
