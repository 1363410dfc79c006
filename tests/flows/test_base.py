"""The parameters a flow run stores (what the Prefect UI shows and a re-run reads back) come out
of ``PlumblineFlow`` as Prefect's own encoder would make them, without importing FastAPI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect import Flow

from flows.base import PlumblineFlow, flow
from flows.run_suite import RunSuiteParams, run_suite
from flows.spread import RunPart

ROOT = Path(__file__).resolve().parents[2]

EVERY_FIELD = RunSuiteParams(
    suite="smoke", models=["fake/stable", "openai/gpt-4o"], samples=3, temperature=0.7, seed=7,
    max_tokens=128, run_id="r-1", source="scheduled",
    as_of=datetime(2026, 11, 30, 6, 15, tzinfo=UTC), shard_size=500, workers=2,
    part=RunPart(index=1, of=2, start=0, stop=1000, lease_token="a" * 32),
    system_prompt="Be brief.", concurrency=64, rpm_limit=600.0, tpm_limit=90000.0,
    use_cache=True,
)


def test_every_form_field_is_stored_as_json_that_reads_back_to_the_same_run() -> None:
    assert isinstance(run_suite, PlumblineFlow)
    values = dict(EVERY_FIELD)  # the flow is called with the fields as they are
    stored = run_suite.serialize_parameters(values)
    assert json.loads(json.dumps(stored)) == stored
    assert RunSuiteParams.model_validate(stored) == EVERY_FIELD
    # The same values as Prefect's own encoder, field by field, once both are read back.
    prefects = Flow.serialize_parameters(run_suite, values)
    assert RunSuiteParams.model_validate(prefects) == RunSuiteParams.model_validate(stored)
    assert stored["part"] == prefects["part"] and stored["models"] == prefects["models"]


def test_a_value_that_is_not_json_is_stored_as_its_type_name() -> None:
    @flow(name="takes-anything")
    def takes(thing: object) -> None:
        return None

    class Opaque:
        pass

    assert takes.serialize_parameters({"thing": Opaque(), "n": 3}) == {
        "thing": "<Opaque>", "n": 3}


def test_storing_the_parameters_does_not_import_fastapi() -> None:
    code = ("import sys\nfrom flows.run_suite import run_suite\n"
            "run_suite.serialize_parameters({'suite': 'smoke', 'models': ['fake/stable']})\n"
            "print('fastapi' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                              "PATH": "/usr/bin:/bin"}, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_limited_tags_keeps_a_tag_it_cannot_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tag with a limit is kept, one without is dropped, and one the API could not answer for
    is kept too: Prefect's own slot lookup then decides, so a limit is never skipped."""
    import httpx
    from prefect.exceptions import ObjectNotFound

    import flows.base

    class Client:
        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def read_global_concurrency_limit_by_name(self, name: str) -> object:
            if name == "tag:provider:capped":
                return object()
            if name == "tag:provider:free":
                raise ObjectNotFound(http_exc=Exception("404"))
            raise httpx.ConnectError("the API is down")

    monkeypatch.setattr(flows.base, "get_client", lambda sync_client: Client())
    assert flows.base.limited_tags({"provider:capped", "provider:free", "provider:unknown"}) == \
        {"provider:capped", "provider:unknown"}
