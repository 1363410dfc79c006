"""``plumbline serve``: every deployment with its schedule, served from this one process.

The embedded default: no work pool and no worker. Prefect's runner polls the server for due runs
(scheduled or started from the UI) and executes each in a subprocess of this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment

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


def serve(limit: int | None = None) -> None:
    """Register every deployment with the Prefect API and run their flow runs until stopped."""
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(), limit=limit)


if __name__ == "__main__":
    serve()
