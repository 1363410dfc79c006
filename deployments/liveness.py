"""Runs whose process is gone never hold a slot (issue 16, item 5).

A flow run whose process died (SIGKILL, Ctrl-C on ``plumbline up``, a lost machine) stays
Running in Prefect's database: nobody is left to report its end. ``nightly`` and
``daily-canary`` allow one run at a time, so such a zombie holds the only slot and every later
run waits in AwaitingConcurrencySlot forever. Two of Prefect's own mechanisms end that:

- **Heartbeats and an automation.** Served flow runs emit ``prefect.flow-run.heartbeat`` every
  ``HEARTBEAT_SECONDS``; ``zombie_automation`` is Prefect's documented "detect zombie flows"
  automation, scoped to our deployments: a run whose heartbeat stops for ``ZOMBIE_AFTER_S``
  without a terminal state is set to Crashed, which releases its concurrency slot. This works
  for any process that dies while the Prefect server lives (a worker on another machine too).
- **Reconciliation by ``plumbline up``.** ``up`` owns its server and is the only one running
  its deployments, so when it starts (after a crash or a power cut) and when it stops, every run
  of its deployments still Pending, Running or Cancelling has no process: ``crash_orphans`` sets
  each to Crashed (with a message saying why), and their child runs with them. A run killed
  before its first heartbeat (still Pending) is only caught this way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.states import Crashed

# Prefect's minimum. Its default (180 s) would let a dead nightly hold the slot for 9 minutes.
HEARTBEAT_SECONDS = 30
# Three missed heartbeats: a run is not declared dead for one slow beat.
ZOMBIE_AFTER_S = 3 * HEARTBEAT_SECONDS
AUTOMATION_NAME = "plumbline: crash runs whose heartbeat stopped"
# States in which a run claims to have a live process (and may hold a concurrency slot).
ACTIVE = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
# Flow runs read per page while reconciling.
PAGE = 200
# The events that end a watch: another heartbeat, or the run reaching a terminal state.
_ALIVE_OR_DONE = {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                  "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                  "prefect.flow-run.Crashed"}


def zombie_automation(deployment_ids: Iterable[UUID], within_s: float = ZOMBIE_AFTER_S
                      ) -> AutomationCore:
    """Prefect's "detect zombie flows" automation, for the runs of ``deployment_ids``.

    ``force`` on the state change: a zombie left in Cancelling (someone pressed Cancel, nobody
    was there to cancel it) must end too; a forced Crashed still releases its concurrency slot.
    """
    ids = sorted(str(i) for i in deployment_ids)
    return AutomationCore(
        name=AUTOMATION_NAME,
        description=(
            "Marks a Plumbline flow run Crashed when its heartbeat (every "
            f"{HEARTBEAT_SECONDS} s) has stopped for {within_s:.0f} s without it finishing: "
            "its process is gone, and it must not hold a concurrency slot. Created by "
            "`plumbline serve` (deployments/liveness.py)."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect=set(_ALIVE_OR_DONE),
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification({
                "prefect.resource.role": "deployment",
                "prefect.resource.id": [f"prefect.deployment.{i}" for i in ids],
            }),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_s),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED, force=True,
            message=f"No heartbeat for {within_s:.0f} s: the flow run's process is gone "
                    "(killed, or its machine lost). Marked Crashed so that it does not hold "
                    "a concurrency slot; re-run it to finish its work.",
        )],
    )


def ensure_zombie_automation(client: SyncPrefectClient, deployment_ids: Iterable[UUID],
                             within_s: float = ZOMBIE_AFTER_S) -> UUID:
    """Create the automation, or bring an existing one (by name) up to date; its id."""
    wanted = zombie_automation(deployment_ids, within_s)
    existing = client.read_automations_by_name(AUTOMATION_NAME)
    if not existing:
        return client.create_automation(wanted)
    first, *duplicates = existing
    client.update_automation(first.id, wanted)
    for extra in duplicates:  # two `serve` processes racing at their first start
        client.delete_automation(extra.id)
    return first.id


def deployment_ids(client: SyncPrefectClient, names: Sequence[str],
                   tag: str = "plumbline") -> list[UUID]:
    """The ids of our deployments (by name, carrying ``tag``) that exist on this server."""
    found = client.read_deployments(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=list(names))))
    return [d.id for d in found if tag in (d.tags or [])]


def active_runs(client: SyncPrefectClient, deployments: Sequence[UUID]) -> list[FlowRun]:
    """Runs of ``deployments`` claiming a live process, and their child runs, transitively."""
    if not deployments:
        return []
    active = FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))
    found = _all_runs(client, FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=list(deployments)), state=active))
    frontier = [r.id for r in found]
    while frontier:
        children = _all_runs(client, FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier), state=active))
        children = [c for c in children if c.id not in {r.id for r in found}]
        found.extend(children)
        frontier = [c.id for c in children]
    return found


def crash_orphans(client: SyncPrefectClient, deployment_names: Sequence[str],
                  message: str) -> list[FlowRun]:
    """Set every active run of our deployments (and its children) to Crashed; those runs.

    Only for a caller that knows no process of its own is running them (``plumbline up`` at its
    start and after its served flows stopped): it is not a test of whether a process is alive.
    """
    runs = active_runs(client, deployment_ids(client, deployment_names))
    for run in runs:
        # Forced: Cancelling -> Crashed is otherwise refused; a forced terminal state still
        # releases the run's concurrency slot (Prefect's minimal policy keeps that rule).
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
    return runs


def _all_runs(client: SyncPrefectClient, flow_run_filter: FlowRunFilter) -> list[FlowRun]:
    runs: list[FlowRun] = []
    while True:
        page = client.read_flow_runs(flow_run_filter=flow_run_filter, limit=PAGE,
                                     offset=len(runs))
        runs.extend(page)
        if len(page) < PAGE:
            return runs


def main() -> int:
    """``python -m deployments.liveness``: install the automation for the deployments on the
    server at ``PREFECT_API_URL`` (for work pools; ``plumbline serve`` does it itself)."""
    from prefect.client.orchestration import get_client

    from deployments.specs import SPECS

    with get_client(sync_client=True) as client:
        ids = deployment_ids(client, [s.name for s in SPECS])
        if not ids:
            print("no Plumbline deployment on this server yet: run `prefect deploy --all` first")
            return 1
        ensure_zombie_automation(client, ids)
    print(f"automation {AUTOMATION_NAME!r} covers {len(ids)} deployment(s); flow runs must send "
          f"heartbeats every {HEARTBEAT_SECONDS} s (PREFECT_FLOWS_HEARTBEAT_FREQUENCY)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
