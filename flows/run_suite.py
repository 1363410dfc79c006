"""The ``run-suite`` flow: a suite × models × samples → scored rows in storage.

Tasks are mapped over (model × shard of cases); the calls inside a shard run concurrently with
asyncio, because a Prefect task per LLM call would cost more orchestration than the call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.providers.registry import ProviderRegistry
from tasks.runner import RunConfig, resolve_config, run_shard, shard_cases, summarize
from tasks.schema import SOURCE_ON_DEMAND
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.suites import Case, Suite, load_suite

DEFAULT_MODELS = ["fake/stable", "fake/drifting"]


class RunSuiteParams(BaseModel):
    """What the Prefect UI's form for ``run-suite`` asks for."""

    suite: str = Field("smoke", description="A shipped suite's name or a path to a suite folder.")
    models: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        description="Model ids as provider/model, e.g. openai/gpt-4o, fake/stable.",
        min_length=1,
    )
    samples: int | None = Field(
        None, ge=1, le=100, description="Samples per case (default: the suite's)."
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Sampling temperature (default: the suite's)."
    )
    seed: int | None = Field(None, description="Sampling seed (default: the suite's).")
    max_tokens: int | None = Field(
        None, ge=1, le=32768, description="Max output tokens (default: the suite's)."
    )
    run_id: str | None = Field(
        None, description="Re-use a run id to resume it; empty for a new run."
    )
    source: Literal["scheduled", "on_demand"] = Field(
        SOURCE_ON_DEMAND, description="'scheduled' for cron runs, 'on_demand' otherwise."
    )
    as_of: datetime | None = Field(
        None, description="Simulated time of the run (backfills and the demo); empty for now."
    )
    shard_size: int = Field(25, ge=1, le=1000, description="Cases per Prefect task.")


@task(name="run-shard", cache_policy=NO_CACHE, retries=0)
def run_shard_task(
    suite: Suite, model_id: str, cases: list[Case], config: RunConfig, store: ObjectStore
) -> list[dict[str, Any]]:
    return run_shard(suite, model_id, cases, config, store)


def execute(params: RunSuiteParams, store: ObjectStore) -> dict[str, Any]:
    """The flow's body, given its store: load, check, map shards, summarize."""
    logger = get_run_logger()
    suite = load_suite(params.suite)
    ProviderRegistry().check(params.models)  # a bad model id fails before any call
    config = resolve_config(
        suite,
        run_id=params.run_id,
        samples=params.samples,
        temperature=params.temperature,
        seed=params.seed,
        max_tokens=params.max_tokens,
        source=params.source,
        as_of=params.as_of,
    )
    shards = shard_cases(suite.cases, params.shard_size)
    logger.info(
        "run %s: suite %s (%d cases, %s) x %d model(s) x %d sample(s) into %s",
        config.run_id, suite.name, len(suite.cases), suite.hash[:19], len(params.models),
        config.samples, store.describe(),
    )
    futures = [
        run_shard_task.submit(suite, model_id, shard, config, store)
        for model_id in params.models
        for shard in shards
    ]
    records = [rec for fut in futures for rec in fut.result()]
    summary = summarize(records)
    create_table_artifact(
        key="run-summary",
        table=summary,
        description=f"Run `{config.run_id}`: suite `{suite.name}` {suite.version}",
    )
    for row in summary:
        logger.info("%s: pass rate %.2f over %d rows, %d errors", row["model_id"],
                    row["pass_rate"] or 0.0, row["rows"], row["errors"])
    return {"run_id": config.run_id, "suite": suite.name, "rows": len(records),
            "summary": summary}


@flow(name="run-suite", log_prints=True)
def run_suite(
    params: RunSuiteParams = RunSuiteParams(),
) -> dict[str, Any]:
    """Run a prompt suite against models and keep every output as Parquet."""
    return execute(params, open_store(Settings()))


if __name__ == "__main__":
    run_suite()
