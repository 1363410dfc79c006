"""The Plumbline deployments, defined once: names, flows, schedules, limits, parameters."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from prefect import Flow

TIMEZONE = "UTC"
WORK_POOL = "plumbline"


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment as both ``prefect.yaml`` and ``plumbline serve`` create it."""

    name: str
    entrypoint: str  # flows/<file>.py:<function>, as prefect.yaml spells it
    description: str
    cron: str | None = None
    concurrency_limit: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ("plumbline",)

    @property
    def module(self) -> str:
        path, _ = self.entrypoint.split(":")
        return path.removesuffix(".py").replace("/", ".")

    @property
    def function(self) -> str:
        return self.entrypoint.split(":")[1]

    def load_flow(self) -> Flow[..., Any]:
        """The flow object behind the entrypoint (imported as a module, from any directory)."""
        return getattr(importlib.import_module(self.module), self.function)


SPECS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="run-suite",
        entrypoint="flows/run_suite.py:run_suite",
        description="Run a suite against models on demand: fill the form, press Run.",
        tags=("plumbline", "on-demand"),
    ),
    DeploymentSpec(
        name="daily-canary",
        entrypoint="flows/daily_canary.py:daily_canary",
        description="The drift-canary and cheap suites against the tracked models, daily.",
        cron="0 6 * * *",
        # A canary that overruns into the next day's must not stack up behind it.
        concurrency_limit=1,
        tags=("plumbline", "scheduled"),
    ),
    DeploymentSpec(
        name="nightly",
        entrypoint="flows/nightly.py:nightly",
        description="Compaction, aggregation, drift tests and publishing of the summaries.",
        cron="0 2 * * *",
        # Two nightlies at once would race on the same summary files.
        concurrency_limit=1,
        tags=("plumbline", "scheduled"),
    ),
    DeploymentSpec(
        name="compaction",
        entrypoint="flows/compaction.py:compaction",
        description="Merge each day's small raw files only (after a backfill or a burst).",
        concurrency_limit=1,
        tags=("plumbline", "maintenance"),
    ),
    DeploymentSpec(
        name="red-team",
        entrypoint="flows/red_team.py:red_team",
        description="Run the red-team suite (all or some attack categories) against models on "
        "demand.",
        tags=("plumbline", "on-demand"),
    ),
    DeploymentSpec(
        name="nightly-batch",
        entrypoint="flows/nightly.py:nightly_batch",
        description="Part of a nightly spread over workers: compact and aggregate some days.",
        # Started by `nightly` only (no schedule, no limit: its parts run side by side).
        tags=("plumbline", "part"),
    ),
)


def spec_by_name(name: str) -> DeploymentSpec:
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"no deployment named {name!r}; known: {', '.join(s.name for s in SPECS)}")
