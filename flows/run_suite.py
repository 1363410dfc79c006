"""The ``run-suite`` flow: a suite × models × samples → scored rows in storage.

Tasks are mapped over (model × shard of cases); the calls inside a shard run concurrently with
asyncio, because a Prefect task per LLM call would cost more orchestration than the call. Each
shard task is tagged ``provider:<prefix>``, so a Prefect concurrency limit on that tag caps
how many shards hit one provider at once across every worker.

Before anything is read or called, the flow checks its parameters (a bad suite or model fails
the run at once, with one message and no traceback) and takes the run id's lease
(``tasks.run.lease``), so two flow runs never work on one run id together. A cancelled or
interrupted run tells its shards to stop (they run in threads no signal reaches) and waits for
them briefly, so they end quietly with their rows written instead of each logging a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from pydantic import BaseModel, Field

from tasks.catalog import load_suite
from tasks.errors import PlumblineError
from tasks.identity import SOURCE_ON_DEMAND
from tasks.providers.base import split_model_id
from tasks.providers.registry import ProviderRegistry
from tasks.run.lease import RunLease, default_holder
from tasks.run.plan import RunConfig, plan_shards, provider_options, resolve_config, shard_cases
from tasks.run.progress import PROGRESS
from tasks.run.shard import run_shard
from tasks.run.state import final_rows, open_run
from tasks.run.summary import for_reader, summarize
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.suites.model import Case, Suite

DEFAULT_MODELS = ["fake/stable", "fake/drifting"]
# How often the flow refreshes the progress artifact while shards run.
PROGRESS_EVERY_S = 2.0
# How long a cancelled or interrupted run waits for its shards to stop: well inside the 30 s
# Prefect's runner gives a cancelled flow run's process before it kills it.
STOP_WAIT_S = 10.0


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
        SOURCE_ON_DEMAND, description="The label every row of the run carries in its source "
        "column: 'scheduled' for the canary's cron runs, 'on_demand' for runs started by hand.",
    )
    as_of: datetime | None = Field(
        None, description="The time the rows are stamped with, to backfill past days (the demo "
        "does); empty for now.",
    )
    shard_size: int = Field(
        25, ge=1, le=1000, description="Cases per Prefect task: smaller shards spread a run over "
        "more tasks and workers, larger ones cost less orchestration.",
    )
    system_prompt: str | None = Field(
        None, description="System prompt sent before every case (default: the suite's)."
    )
    concurrency: int | None = Field(
        None, ge=1, le=1024,
        description="Calls in flight per shard task (default: PLUMBLINE_CONCURRENCY, 16).",
    )
    rpm_limit: float | None = Field(
        None, gt=0, description="Requests per minute for each provider of this run, the offline "
        "fake one included (default: PLUMBLINE_PROVIDER_LIMITS).",
    )
    tpm_limit: float | None = Field(
        None, gt=0, description="Tokens per minute for each provider of this run, the offline "
        "fake one included (default: PLUMBLINE_PROVIDER_LIMITS).",
    )
    use_cache: bool = Field(
        False, description="Reuse cached answers for identical calls (same model, input, "
        "parameters and sample index). Off by default: a canary must ask the model.",
    )


@task(name="run-shard", cache_policy=NO_CACHE, retries=0)
def run_shard_task(
    suite: Suite,
    model_id: str,
    cases: list[Case],
    config: RunConfig,
    store: ObjectStore,
    skip: frozenset[tuple[str, int]] = frozenset(),
    options: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]] | State:
    rows = run_shard(suite, model_id, cases, config, store, skip=skip, provider_options=options)
    if PROGRESS.stop_requested(config.run_id):
        # Stopped by the flow, its rows written. A completed type keeps this at one INFO line per
        # shard (Prefect logs any other final task state as an ERROR); the flow says once why.
        return Completed(name="Stopped", message=f"stopped with the run after {len(rows)} "
                         "cell(s)", data=rows)
    return rows


@dataclass(frozen=True)
class Prepared:
    """A run's checked inputs: everything that can be wrong with the form is found here."""

    suite: Suite
    models: list[str]
    options: dict[str, dict[str, Any]]
    config: RunConfig


def prepare(params: RunSuiteParams, settings: Settings) -> Prepared:
    """Load the suite, check every model and resolve the run's parameters, before any call.

    Raises a ``PlumblineError`` naming what is wrong (the suite, a model id, a missing key).
    """
    suite = load_suite(params.suite)
    options = provider_options(
        params.models,
        limits=settings.provider_limits,
        timeout=settings.request_timeout_s,
        max_attempts=settings.max_attempts,
        pricing_file=settings.pricing_file,
        targets_file=settings.targets_file,
        rpm=params.rpm_limit,
        tpm=params.tpm_limit,
    )
    # A bad model id or a missing key fails here, before any call.
    ProviderRegistry(options=options).check(params.models)
    config = resolve_config(
        suite,
        run_id=params.run_id,
        samples=params.samples,
        temperature=params.temperature,
        seed=params.seed,
        max_tokens=params.max_tokens,
        system_prompt=params.system_prompt,
        source=params.source,
        as_of=params.as_of,
        concurrency=params.concurrency or settings.default_concurrency,
        use_cache=params.use_cache or settings.response_cache,
    )
    # A model listed twice is still one set of cells: two would write every row twice.
    return Prepared(suite, list(dict.fromkeys(params.models)), options, config)


def holder_name() -> str:
    """Who holds a run id's lease, as the Prefect UI and a person find it."""
    name, run_id = flow_run.get_name(), flow_run.get_id()
    where = default_holder()
    return f"flow run {name!r} ({run_id}), {where}" if run_id else where


def execute(
    params: RunSuiteParams, store: ObjectStore, settings: Settings | None = None
) -> dict[str, Any]:
    """The flow's body, given its store: check, take the run id, resume, map shards, summarize.

    Raises a ``PlumblineError`` before any call when a parameter is wrong, and ``RunBusy`` when
    another flow run holds the run id.
    """
    settings = settings or Settings()
    prep = prepare(params, settings)
    run_id = prep.config.run_id
    lease = RunLease(store, run_id, holder_name(), on_lost=lambda: PROGRESS.request_stop(run_id))
    # A run id generated just now cannot be contended: no settle-and-read-back needed.
    lease.acquire(fresh=params.run_id is None)
    lease.start_renewing()
    try:
        return _run(prep, params.shard_size, store, lease)
    finally:
        lease.release()


def _run(prep: Prepared, shard_size: int, store: ObjectStore, lease: RunLease) -> dict[str, Any]:
    logger = get_run_logger()
    suite, models, options, config = prep.suite, prep.models, prep.options, prep.config
    state = open_run(store, suite, config)
    completed = state.completed
    plan = plan_shards(suite.cases, models, config, shard_size, completed)
    shard_count = len(shard_cases(suite.cases, shard_size))
    total = sum(p.todo for p in plan)
    logger.info(
        "run %s%s: suite %s (%d cases, %s) x %d model(s) x %d sample(s) into %s; "
        "%d cell(s) to call, %d already done",
        config.run_id, " (resumed)" if state.resumed else "", suite.name, len(suite.cases),
        suite.hash[:19], len(models), config.samples, store.describe(), total,
        len(completed),
    )
    # The plan was read under the lease; one more look before the first call narrows the window
    # in which a contender whose write was slow could still overtake it (tasks.run.lease).
    lease.renew()
    lease.check()
    PROGRESS.start(config.run_id, total)
    try:
        progress_id = create_progress_artifact(
            progress=0.0 if total else 100.0, key="run-progress",
            description=f"Run `{config.run_id}`: {total} call(s)",
        )
        futures = [
            run_shard_task.with_options(
                tags={f"provider:{split_model_id(p.model_id)[0]}"},
                task_run_name=f"run-shard {p.model_id} {p.index + 1}/{shard_count}",
            ).submit(suite, p.model_id, p.cases, config, store, p.skip, options)
            for p in plan
        ]
        try:
            _follow(futures, [p.todo for p in plan], config.run_id, total, progress_id)
        except BaseException as exc:
            _stop_shards(futures, config.run_id, exc)
            raise
        lease.check()  # lost while the shards ran: they stopped early, and this says why
        new = [rec for fut in futures for rec in fut.result()]
    finally:
        PROGRESS.forget(config.run_id)
    rows = final_rows([*state.rows, *new])
    summary = summarize(rows)
    create_table_artifact(
        key="run-summary",
        table=for_reader(summary),
        description=f"Run `{config.run_id}`: suite `{suite.name}` {suite.version}",
    )
    for row in summary:
        logger.info("%s: pass rate %.2f over %d rows, %d errors", row["model_id"],
                    row["pass_rate"] or 0.0, row["rows"], row["errors"])
    return {"run_id": config.run_id, "suite": suite.name, "rows": len(rows),
            "written": len(new), "resumed_cells": len(completed), "summary": summary}


def _stop_shards(futures: list[PrefectFuture[Any]], run_id: str, exc: BaseException) -> None:
    """Tell the shards to stop and give them ``STOP_WAIT_S`` to write what they have.

    Without this, Prefect's task runner cancels every shard that has not reached its body yet,
    and each one logs "Crash detected!" (40 shards, 40 lines); the shards already calling would
    keep calling until the process is killed.
    """
    PROGRESS.request_stop(run_id)
    wait(futures, timeout=STOP_WAIT_S)
    if isinstance(exc, Exception):
        return  # an error: Prefect reports it
    done, _ = PROGRESS.get(run_id)
    get_run_logger().warning(
        "run %s %s: its shards stopped; the %d cell(s) answered are kept, run the same run id "
        "again to finish it", run_id,
        "interrupted" if isinstance(exc, KeyboardInterrupt) else "cancelled", done)


def _follow(futures: list[PrefectFuture[Any]], cells: list[int], run_id: str, total: int,
            progress_id: UUID) -> None:
    """Wait for the shards, moving the progress artifact as cells complete.

    Cells are counted as they finish when shards run in this process; with shards on other
    workers the count moves shard by shard instead.
    """
    pending = set(range(len(futures)))
    finished_cells = 0
    shown = 0.0
    while pending:
        done, _ = wait([futures[i] for i in pending], timeout=PROGRESS_EVERY_S)
        for i in [i for i in pending if futures[i] in done]:
            pending.discard(i)
            finished_cells += cells[i]
        live, _ = PROGRESS.get(run_id)
        percent = 100.0 * max(live, finished_cells) / total if total else 100.0
        if percent - shown >= 1.0 or (not pending and percent != shown):
            shown = min(100.0, percent)
            update_progress_artifact(progress_id, shown)


@flow(name="run-suite", log_prints=True)
def run_suite(
    params: RunSuiteParams = RunSuiteParams(),
) -> dict[str, Any] | State:
    """Run a prompt suite against models and keep every output as Parquet."""
    settings = Settings()
    try:
        return execute(params, open_store(settings), settings)
    except PlumblineError as exc:
        return refuse(exc)


def refuse(exc: PlumblineError) -> State:
    """Fail the flow run with ``exc``'s message, logged once and without a traceback.

    A ``PlumblineError`` is raised on purpose and says what to fix (the suite, a model id, a
    busy run id); raising it out of the flow would add Prefect's two tracebacks to the one line
    that matters. Whoever called the flow directly (``plumbline run``, a parent flow's
    ``state.result()``) still gets ``exc`` raised.
    """
    get_run_logger().error("%s", exc)
    return Failed(message=str(exc), data=exc)


if __name__ == "__main__":
    run_suite()
