"""The ``daily-canary`` flow: the cheap canary suites against every tracked model, once a day.

Each suite runs as its own ``run-suite`` child flow, so the Prefect UI shows one run (with its
result table) per suite, and a suite that fails does not stop the others from running.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger
from prefect.states import State
from prefect.variables import Variable
from pydantic import BaseModel, Field

from flows.base import flow
from flows.run_suite import refuse, run_suite
from tasks.errors import CanaryFailed, PlumblineError
from tasks.identity import SOURCE_SCHEDULED
from tasks.settings import Settings

CANARY_SUITES = ["drift-canary", "cheap"]
TRACKED_MODELS_VARIABLE = "plumbline_tracked_models"


class DailyCanaryParams(BaseModel):
    """What the Prefect UI's form for ``daily-canary`` asks for."""

    # A plain default (pydantic copies it per instance) rather than a factory, so that the
    # field's JSON schema, and so the Prefect UI's form, shows it.
    suites: list[str] = Field(
        list(CANARY_SUITES),
        min_length=1,
        description="Suites to run, each as its own run-suite child flow.",
    )
    models: list[str] | None = Field(
        None,
        description="Models to check; empty for the tracked models (the Prefect variable "
        "plumbline_tracked_models, else PLUMBLINE_TRACKED_MODELS on the worker).",
    )
    samples: int | None = Field(
        None, ge=1, le=100, description="Samples per case (default: each suite's)."
    )



def parse_models(value: object, where: str) -> list[str]:
    """A list of model ids from a JSON list or a comma-separated string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PlumblineError(f"{where}: not a JSON list: {exc.msg}") from exc
        else:
            value = [m.strip() for m in text.split(",") if m.strip()]
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise PlumblineError(
            f"{where} must be a list of model ids (provider/model) or a comma-separated "
            f"string, got {value!r}"
        )
    return value


def resolve_models(
    params: DailyCanaryParams, settings: Settings, variable: object = None
) -> list[str]:
    """The models to check: the parameter, else the Prefect variable, else the settings.

    The variable (``plumbline_tracked_models``) is editable in the Prefect UI and read at run
    time, so on many workers a tracked model is added in one place, without a redeploy.
    """
    if params.models:
        return params.models
    if variable not in (None, "", []):
        return parse_models(variable, f"Prefect variable {TRACKED_MODELS_VARIABLE}")
    if not settings.tracked_models:
        raise PlumblineError(
            "daily-canary has no models: set the Prefect variable "
            f"{TRACKED_MODELS_VARIABLE}, PLUMBLINE_TRACKED_MODELS or the 'models' parameter"
        )
    return settings.tracked_models


@flow(name="daily-canary", log_prints=True)
def daily_canary(params: DailyCanaryParams = DailyCanaryParams()) -> dict[str, Any] | State:
    """Run the canary suites against the tracked models (scheduled daily)."""
    try:
        return run_canary(params)
    except PlumblineError as exc:
        # No models configured, a malformed variable, failed suites: one message, no traceback.
        return refuse(exc)


def run_canary(params: DailyCanaryParams) -> dict[str, Any]:
    """The flow's body: each suite as a ``run-suite`` child flow; raises if any did not
    complete, after every suite had its chance."""
    logger = get_run_logger()
    variable = None if params.models else Variable.get(TRACKED_MODELS_VARIABLE, default=None)
    models = resolve_models(params, Settings(), variable)
    logger.info("daily-canary: suites %s against %s", ", ".join(params.suites), ", ".join(models))
    runs: list[dict[str, Any]] = []
    failed: list[str] = []
    for suite in params.suites:
        state = run_suite(suite=suite, models=models, samples=params.samples,
                          source=SOURCE_SCHEDULED, return_state=True)
        if state.is_completed():
            result = state.result()
            runs.append({"suite": suite, "run_id": result["run_id"], "rows": result["rows"]})
        else:
            logger.error("daily-canary: suite %s did not complete: %s", suite, state.message)
            failed.append(suite)
    if failed:
        # Raised after every suite had its chance: one broken suite must not hide the others.
        raise CanaryFailed(f"canary suite(s) failed: {', '.join(failed)} (completed: "
                           f"{', '.join(r['suite'] for r in runs) or 'none'})")
    return {"models": models, "runs": runs}


if __name__ == "__main__":
    daily_canary()
