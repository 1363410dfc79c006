"""The ``run-suite`` flow: a suite × models × samples → scored rows in storage.

Longer than 400 lines: the form, the in-process path and the spread path of one flow.

Tasks are mapped over (model × shard of cases), by default one task per model; the calls inside
a shard run concurrently with asyncio, because a Prefect task per LLM call (or per 25 cases)
costs more orchestration than the calls (docs/deploy.md). Each shard task is tagged
``provider:<prefix>``, so a Prefect concurrency limit on that tag caps how many shards hit one
provider at once across every worker. A big run started on a work pool with several workers (or
asked to with ``workers``) spreads over child runs of the run-suite deployment instead, one per
part of model × cases, under the parent's lease (``flows/spread.py``).

Before anything is read or called, the flow checks its parameters (a bad suite or model fails
the run at once, with one message and no traceback) and takes the run id's lease
(``tasks.run.lease``), so two flow runs never work on one run id together. A cancelled or
interrupted run tells its shards to stop (they run in threads no signal reaches) and waits for
them briefly, so they end quietly with their rows written instead of each logging a crash.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from cyclopts import Parameter
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

from flows.spread import RunPart, Target, fan_out, run_parts, where
from tasks.catalog import load_suite
from tasks.errors import PlumblineError
from tasks.identity import SOURCE_ON_DEMAND
from tasks.providers.base import split_model_id
from tasks.providers.registry import ProviderRegistry
from tasks.run.lease import FollowedLease, RunLease, default_holder
from tasks.run.plan import (
    PartPlan,
    RunConfig,
    plan_parts,
    plan_shards,
    provider_options,
    resolve_config,
    shard_cases,
)
from tasks.run.progress import PROGRESS
from tasks.run.shard import run_shard
from tasks.run.state import RunState, final_rows, load_rows, open_run
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
    shard_size: int | None = Field(
        None, ge=1, description="Cases per Prefect task; empty (the default) for one task per "
        "model, whose calls run concurrently. Smaller shards only add overhead in one process.",
    )
    workers: int | None = Field(
        None, ge=1, le=256, description="Spread the run over this many child flow runs of the "
        "run-suite deployment, which the work pool's workers pick up; 1 runs it in this process. "
        "Empty: spread only when the run came from a deployment on a work pool with two or more "
        "online workers and is big enough to pay for it.",
    )
    # Hidden from `plumbline run --help`: only a parent run sets it.
    part: Annotated[RunPart | None, Parameter(show=False)] = Field(
        None, description="Set by a run that spread itself over workers, for its child runs: "
        "which cases of which model this run does. Leave empty.",
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

    A run spreads itself over child runs when ``fan_out`` says so (``flows/spread.py``); a child
    (``params.part`` set) works on its part under the parent's lease instead of taking one.
    Raises a ``PlumblineError`` before any call when a parameter is wrong, and ``RunBusy`` when
    another flow run holds the run id.
    """
    settings = settings or Settings()
    prep = prepare(params, settings)
    run_id = prep.config.run_id
    lease: RunLease | FollowedLease
    if params.part is not None:
        if params.run_id is None or len(prep.models) != 1:
            raise PlumblineError("a run's part needs its run id and exactly one model")
        lease = FollowedLease(store, run_id, params.part.lease_token,
                              on_lost=lambda: PROGRESS.request_stop(run_id))
        lease.follow()
    else:
        lease = RunLease(store, run_id, holder_name(),
                         on_lost=lambda: PROGRESS.request_stop(run_id))
        # A run id generated just now cannot be contended: no settle-and-read-back needed.
        lease.acquire(fresh=params.run_id is None)
        lease.start_renewing()
    try:
        return _run(prep, params, store, lease)
    finally:
        lease.release()


# A child run costs a few seconds of fixed time (a worker picks it up, starts a process, imports
# Prefect and Plumbline, reads the run's state): a part is worth one only with at least this many
# cells (docs/deploy.md, "Spreading one run over workers").
MIN_PART_CELLS = 1000
RUN_SUITE_DEPLOYMENT = "run-suite/run-suite"


def _run(prep: Prepared, params: RunSuiteParams, store: ObjectStore,
         lease: RunLease | FollowedLease) -> dict[str, Any]:
    logger = get_run_logger()
    suite, models, options, config = prep.suite, prep.models, prep.options, prep.config
    state = open_run(store, suite, config)
    part = params.part
    cases = suite.cases if part is None else suite.cases[part.start:part.stop]
    if part is not None:
        ids = {c.id for c in cases}
        mine = [r for r in state.rows if r["model_id"] in models and r["prompt_id"] in ids]
        state = RunState(state.run_id, bool(mine), mine)  # resumed: this part had rows
    completed = state.completed
    plan = plan_shards(cases, models, config, params.shard_size, completed)
    shard_count = len(shard_cases(cases, params.shard_size))
    total = sum(p.todo for p in plan)
    logger.info(
        "run %s%s%s: suite %s (%d cases, %s) x %d model(s) x %d sample(s) into %s; "
        "%d cell(s) to call, %d already done",
        config.run_id, " (resumed)" if state.resumed else "",
        f" part {part.index}/{part.of} (cases {part.start}-{part.stop - 1}, {where()})"
        if part else "",
        suite.name, len(cases), suite.hash[:19], len(models), config.samples, store.describe(),
        total, len(completed),
    )
    # The plan was read under the lease; one more look before the first call narrows the window
    # in which a contender whose write was slow could still overtake it (tasks.run.lease).
    lease.renew()
    lease.check()
    if part is None and isinstance(lease, RunLease):
        parts, target = fan_out(params.workers, deployment=RUN_SUITE_DEPLOYMENT, units=total,
                                min_units=MIN_PART_CELLS, prefer_current=True)
        if target is not None:
            cut = plan_parts(suite.cases, models, config.samples, parts, completed)
            if len(cut) >= 2:
                return _run_spread(prep, params, store, lease, state, cut, target)
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
    what = f"suite `{suite.name}` {suite.version}"
    _summarize(rows, config.run_id, what + (f", part {part.index}/{part.of}" if part else ""))
    return {"run_id": config.run_id, "suite": suite.name, "rows": len(rows),
            "written": len(new), "resumed_cells": len(completed),
            "summary": summarize(rows)}


def _summarize(rows: list[dict[str, Any]], run_id: str, what: str) -> None:
    logger = get_run_logger()
    summary = summarize(rows)
    create_table_artifact(key="run-summary", table=for_reader(summary),
                          description=f"Run `{run_id}`: {what}")
    for row in summary:
        logger.info("%s: pass rate %.2f over %d rows, %d errors", row["model_id"],
                    row["pass_rate"] or 0.0, row["rows"], row["errors"])


def _run_spread(prep: Prepared, params: RunSuiteParams, store: ObjectStore, lease: RunLease,
                state: RunState, cut: list[PartPlan], target: Target) -> dict[str, Any]:
    """The run as child runs of the run-suite deployment, one per part, under this lease.

    The parent keeps renewing the run id's lease while the children work (they follow it), and
    summarises every row of the run from the store once they are all done.
    """
    suite, config = prep.suite, prep.config
    n = len(cut)
    get_run_logger().info(
        "run %s: spread over %d child run(s) of %s (work pool %s, %d online worker(s)): %s",
        config.run_id, n, target.name, target.work_pool or "none", target.online_workers,
        ", ".join(f"{p.model_id} cases {p.start}-{p.stop - 1}" for p in cut))
    base = params.model_dump(mode="json", exclude={"models", "part", "workers", "run_id"})
    child_params = [
        _flow_parameters({**base, "models": [p.model_id], "run_id": config.run_id, "workers": 1,
                          "part": RunPart(index=i + 1, of=n, start=p.start, stop=p.stop,
                                          lease_token=lease.token).model_dump()})
        for i, p in enumerate(cut)
    ]
    ended = run_parts(target, config.run_id, child_params, [p.todo for p in cut],
                      key=f"{config.run_id}:{lease.token}")
    lease.check()
    stored = load_rows(store, config)
    rows = final_rows(stored)
    _summarize(rows, config.run_id, f"suite `{suite.name}` {suite.version}, {n} part(s)")
    return {"run_id": config.run_id, "suite": suite.name, "rows": len(rows),
            "written": len(stored) - len(state.rows), "resumed_cells": len(state.completed),
            "summary": summarize(rows), "parts": [c.name for c in ended]}


def _flow_parameters(fields: dict[str, Any]) -> dict[str, Any]:
    """A child's parameters as the run-suite flow takes them: all in ``params``, or each field
    top-level when the flow's signature lists them."""
    names = set(inspect.signature(run_suite.fn).parameters)
    return {"params": fields} if names == {"params"} else fields


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
