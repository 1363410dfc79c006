"""prefect.yaml and deployments.specs describe the same deployments, and both are well formed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow

from deployments.serve import build_deployments
from deployments.specs import SPECS, TIMEZONE, WORK_POOL, spec_by_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_prefect_yaml_and_specs_agree(prefect_yaml: dict[str, Any]) -> None:
    by_name = {d["name"]: d for d in prefect_yaml["deployments"]}
    assert list(by_name) == [s.name for s in SPECS]
    for spec in SPECS:
        d = by_name[spec.name]
        assert d["entrypoint"] == spec.entrypoint
        assert d["description"] == spec.description
        assert d.get("concurrency_limit") == spec.concurrency_limit, spec.name
        assert (d.get("parameters") or {}) == spec.parameters
        assert tuple(d["tags"]) == spec.tags
        crons = [(s["cron"], s["timezone"]) for s in d.get("schedules") or []]
        assert crons == ([(spec.cron, TIMEZONE)] if spec.cron else []), spec.name
        assert d["work_pool"]["name"] == WORK_POOL


def test_prefect_yaml_follows_the_conventions(prefect_yaml: dict[str, Any]) -> None:
    text = (ROOT / "prefect.yaml").read_text()
    # The work pool and schedules are anchors under definitions:, reused by every deployment.
    assert "&plumbline-pool" in text and text.count("*plumbline-pool") == len(SPECS)
    assert prefect_yaml["definitions"]["work_pools"]["plumbline"]["name"] == WORK_POOL
    for d in prefect_yaml["deployments"]:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", d["name"])
        assert re.fullmatch(r"flows/[a-z_]+\.py:[a-z_]+", d["entrypoint"])
        assert (ROOT / d["entrypoint"].split(":")[0]).is_file()
        assert all(s["timezone"] == "UTC" for s in d.get("schedules") or [])
    # The pull step takes a worker to the folder `prefect deploy` ran in.
    (step,) = prefect_yaml["pull"]
    assert step == {"prefect.deployments.steps.set_working_directory": {
        "directory": "{{ project-dir.stdout }}"}}
    assert prefect_yaml["build"][0]["prefect.deployments.steps.run_shell_script"]["id"] == (
        "project-dir")


def test_every_entrypoint_is_a_flow_with_a_typed_form() -> None:
    for spec in SPECS:
        flow = spec.load_flow()
        assert isinstance(flow, Flow)
        assert flow.name == spec.name  # the deployment's URL reads <flow>/<deployment>
    deployments = {d.name: d for d in build_deployments()}
    schema = deployments["run-suite"]._parameter_openapi_schema.model_dump()
    # The form's fields are top-level (not one "params" group), each described for a user.
    fields = schema["properties"]
    for name in ("suite", "models", "samples", "temperature", "seed", "max_tokens", "run_id"):
        assert fields[name].get("description"), name
    assert fields["suite"]["default"] == "smoke"
    # The suite: a drop-down of the shipped suites, or a path typed in.
    choices, path = fields["suite"]["anyOf"]
    assert {"smoke", "cheap", "drift-canary"} <= set(choices["enum"])
    assert path["type"] == "string" and "enum" not in path
    canary = deployments["daily-canary"]._parameter_openapi_schema.model_dump()
    assert canary["definitions"]["DailyCanaryParams"]["properties"]["suites"]["default"] == [
        "drift-canary", "cheap"]


def test_served_deployments_carry_the_same_schedules_and_limits() -> None:
    for dep in build_deployments():
        spec = spec_by_name(dep.name)
        crons = [(s.schedule.cron, s.schedule.timezone) for s in dep.schedules or []]
        assert crons == ([(spec.cron, "UTC")] if spec.cron else [])
        assert dep.concurrency_limit == spec.concurrency_limit
        assert dep.work_pool_name is None  # served: no pool, no worker
        assert dep.entrypoint == f"{spec.module}.{spec.function}"
    with pytest.raises(KeyError, match="no deployment named 'hourly'"):
        spec_by_name("hourly")
