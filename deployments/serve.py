"""``plumbline serve``: every deployment with its schedule, served from this one process.

The embedded default: no work pool and no worker. Prefect's runner polls the server for due runs
(scheduled or started from the UI) and executes each in a subprocess of this process. Each run
sends a heartbeat every ``HEARTBEAT_SECONDS``, and the automation that marks a silent run
Crashed is installed for the served deployments (``deployments.liveness``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.runner import Runner

from deployments.liveness import HEARTBEAT_SECONDS, ZOMBIE_AFTER_S, ensure_zombie_automation
from deployments.specs import SPECS, TIMEZONE, DeploymentSpec


def to_runner_deployment(spec: DeploymentSpec) -> RunnerDeployment:
    """The served form of a spec: same name, schedule, limit and parameters as prefect.yaml."""
    flow = spec.load_flow()
    kwargs: dict[str, Any] = {}
    if spec.cron:
        kwargs["schedules"] = [CronSchedule(cron=spec.cron, timezone=TIMEZONE)]
    return flow.to_deployment(
        name=spec.name,
        description=spec.description,
        tags=list(spec.tags),
        parameters=dict(spec.parameters),
        concurrency_limit=spec.concurrency_limit,
        # By module path, so the served process runs flows from the installed package whatever
        # its working directory is.
        entrypoint_type=EntrypointType.MODULE_PATH,
        **kwargs,
    )


def build_deployments(specs: Sequence[DeploymentSpec] = SPECS) -> list[RunnerDeployment]:
    return [to_runner_deployment(s) for s in specs]


class PlumblineRunner(Runner):
    """Prefect's runner, stopped cleanly by SIGTERM (how ``plumbline up`` stops it) and SIGINT.

    Prefect 3.8's own SIGTERM handler calls the synchronous ``stop()`` from inside the running
    event loop, where it dispatches to ``astop()`` and drops the coroutine: the runs in flight
    are not cancelled (they stay Running, holding their deployment's slot) and every stop
    prints "coroutine 'Runner.astop' was never awaited". Here a signal schedules ``astop()`` on
    the loop: each run in flight is cancelled through Prefect's cancellation (the flow hears it,
    its state becomes Cancelled), then the schedules are paused and the process exits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signal_loop: asyncio.AbstractEventLoop | None = None
        self._stop_task: asyncio.Task[None] | None = None

    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        loop = self._signal_loop
        if loop is None or loop.is_closed():
            raise SystemExit(0)  # not serving yet: nothing in flight to cancel
        loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stop_task is not None or not self.started:
            return
        self._logger.info("Stopping: cancelling the flow runs in flight, then pausing the "
                          "schedules ...")
        self._stop_task = asyncio.ensure_future(self.astop())

    async def run_until_signalled(self) -> None:
        """Run until a signal stops it (Ctrl-C and SIGTERM alike)."""
        self._signal_loop = asyncio.get_running_loop()
        # SIGTERM is installed by Runner.start(), on this class's handle_sigterm.
        self._signal_loop.add_signal_handler(signal.SIGINT, self.handle_sigterm)
        try:
            await self.start()
        finally:
            self._signal_loop.remove_signal_handler(signal.SIGINT)
            if self._stop_task is not None:
                await asyncio.gather(self._stop_task, return_exceptions=True)


async def aserve(deployments: Sequence[RunnerDeployment], limit: int | None = None) -> None:
    """Register the deployments, install the zombie automation, run their flow runs until
    stopped."""
    runner = PlumblineRunner(limit=limit, heartbeat_seconds=HEARTBEAT_SECONDS,
                             pause_on_shutdown=True)
    ids = [await runner.aadd_deployment(d) for d in deployments]
    await asyncio.to_thread(_install_zombie_automation, ids)
    print(f"Serving {', '.join(d.name for d in deployments)}: each run sends a heartbeat every "
          f"{HEARTBEAT_SECONDS} s; a run silent for {ZOMBIE_AFTER_S} s is marked Crashed.",
          flush=True)
    await runner.run_until_signalled()


def _install_zombie_automation(ids: list[UUID]) -> None:
    with get_client(sync_client=True) as client:
        ensure_zombie_automation(client, ids)


def serve(limit: int | None = None) -> None:
    """Register every deployment with the Prefect API and run their flow runs until stopped."""
    # Built outside the event loop: Flow.to_deployment returns a coroutine inside one.
    asyncio.run(aserve(build_deployments(), limit))


if __name__ == "__main__":
    serve()
