"""The ``run-suite`` flow: a suite × models × samples → scored rows in storage.

Longer than 400 lines: the form (one annotated type per field, shared by ``RunSuiteParams``, the
flow's signature and ``plumbline run``), the in-process path and the spread path of one flow.

Tasks are mapped over (model × shard of cases), by default one task per model; the calls inside
a shard run concurrently with asyncio, because a Prefect task per LLM call (or per 25 cases)
costs more orchestration than the calls (docs/deploy.md). When a Prefect concurrency limit exists
on the tag ``provider:<prefix>``, the shard tasks of that provider carry it, so the limit caps how
many shards hit one provider at once across every worker (``flows.base.limited_tags``). A big
run started on a work pool with several workers (or asked to with ``workers``) spreads over child
runs of the run-suite deployment instead, one per part of model × cases, under the parent's
lease (``flows/spread.py``).

The flow's parameters are one typed, described argument per field of ``RunSuiteParams`` (the
Prefect UI's form shows them as top-level fields; ``plumbline run`` has one option for each);
the flow builds a ``RunSuiteParams`` from them for ``execute``, the engine's entry.

Before anything is read or called, the flow checks its parameters (a bad suite or model fails
the run at once, with one message and no traceback) and takes the run id's lease
(``tasks.run.lease``), so two flow runs never work on one run id together. A cancelled or
interrupted run tells its shards to stop (they run in threads no signal reaches) and waits for
them briefly, so they end quietly with their rows written instead of each logging a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from cyclopts import Parameter
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field, WithJsonSchema

from flows.base import flow, limited_tags
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
from tasks.suites.load import list_suites
from tasks.suites.model import Case, Suite

DEFAULT_MODELS = ["fake/stable", "fake/drifting"]
# How often the flow refreshes the progress artifact while shards run.
PROGRESS_EVERY_S = 2.0
# How often the flow looks for the first finished cell, and how long at most, before importing
# what the rest of the run needs (``_load_the_rest``).
WARM_POLL_S = 0.02
WARM_WAIT_S = 2.0
# How long a cancelled or interrupted run waits for its shards to stop: well inside the 30 s
# Prefect's runner gives a cancelled flow run's process before it kills it.
STOP_WAIT_S = 10.0


def shipped_suites() -> list[str]:
    """The names of the suites shipped in ``suites/`` (folders with a ``suite.toml``)."""
    return [p.name for p in list_suites() if (p / "suite.toml").is_file()]


# The form's suite field: the shipped suites as a drop-down, or any path. An ``anyOf`` of two
# string schemas is what the Prefect UI renders as a choice between two inputs ("Shipped suite"
# selects from the list, "Suite folder" is free text); an ``enum`` alone would refuse a path,
# and ``examples`` only becomes a placeholder. Read when the module loads, so a deployment
# offers the suites its worker's checkout ships.
SUITE_CHOICES = {"anyOf": [
    {"title": "Shipped suite", "type": "string", "enum": shipped_suites()},
    {"title": "Suite folder (path)", "type": "string", "minLength": 1},
]}

# One annotated type per parameter, shared by ``RunSuiteParams`` and the flow's signature, so the
# Prefect UI's form, the CLI and the model validate the same bounds. The descriptions are what
# the form and ``plumbline run --help`` show a user.
SuiteArg = Annotated[str, Field(
    min_length=1,
    description="The suite to run: one of the shipped suites, or the path of a suite folder "
    "(a suite.toml and its cases.jsonl) on the machine that runs the flow.",
), WithJsonSchema(SUITE_CHOICES)]
ModelsArg = Annotated[list[str], Field(
    min_length=1,
    description="The models to ask, each as provider/model, e.g. openai/gpt-4o, "
    "anthropic/claude-sonnet-4-5 or the offline fake/stable.",
)]
SamplesArg = Annotated[int | None, Field(
    ge=1, le=100,
    description="How many times each case is asked (empty: the suite's own number).",
)]
TemperatureArg = Annotated[float | None, Field(
    ge=0, le=2,
    description="Sampling temperature sent with every call (empty: the suite's).",
)]
SeedArg = Annotated[int | None, Field(
    description="Sampling seed sent to providers that accept one (empty: the suite's).",
)]
MaxTokensArg = Annotated[int | None, Field(
    ge=1, le=32768,
    description="The longest answer a model may give, in tokens (empty: the suite's).",
)]
RunIdArg = Annotated[str | None, Field(
    description="Empty for a new run. The id of an earlier run to finish it: only the cells it "
    "has not answered yet are called.",
)]
SourceArg = Annotated[Literal["scheduled", "on_demand"], Field(
    description="The label the rows carry in their source column: 'on_demand' for a run "
    "started by hand, 'scheduled' for the daily canary's runs.",
)]
AsOfArg = Annotated[datetime | None, Field(
    description="The time every row is stamped with, to fill in a past day (empty: now).",
)]
ShardSizeArg = Annotated[int | None, Field(
    ge=1,
    description="Cases per Prefect task; empty (the default) for one task per model, whose calls "
    "run concurrently. Smaller shards only add overhead in one process.",
)]
WorkersArg = Annotated[int | None, Field(
    ge=1, le=256,
    description="Spread the run over this many child flow runs of the run-suite deployment, "
    "which the work pool's workers pick up; 1 runs it in this process. Empty: spread only when "
    "the run came from a deployment on a work pool with two or more online workers and is big "
    "enough to pay for it.",
)]
# Hidden from `plumbline run --help`: only a parent run sets it, on its children.
PartArg = Annotated[RunPart | None, Parameter(show=False), Field(
    description="Set by a run that spread itself over workers, for its child runs: which cases "
    "of which model this run does. Leave empty.",
)]
SystemPromptArg = Annotated[str | None, Field(
    description="A system prompt sent before every case (empty: the suite's, if any).",
)]
ConcurrencyArg = Annotated[int | None, Field(
    ge=1, le=1024,
    description="How many calls are in flight at once in each Prefect task (empty: "
    "PLUMBLINE_CONCURRENCY, else 16).",
)]
RpmLimitArg = Annotated[float | None, Field(
    gt=0,
    description="Requests per minute allowed to each provider of this run, the offline fake "
    "one included (empty: PLUMBLINE_PROVIDER_LIMITS).",
)]
TpmLimitArg = Annotated[float | None, Field(
    gt=0,
    description="Tokens per minute allowed to each provider of this run, the offline fake one "
    "included (empty: PLUMBLINE_PROVIDER_LIMITS).",
)]
UseCacheArg = Annotated[bool, Field(
    description="Reuse a cached answer for an identical call (same model, input, parameters "
    "and sample). Off by default: a canary must ask the model.",
)]


class RunSuiteParams(BaseModel):
    """A run's parameters: the ``run-suite`` flow's arguments, as one object for the engine.

    Each field's type (bounds and description included) is shared with the flow's signature;
    ``tests/flows/test_params_agree.py`` fails when a field is missing from the flow or from
    ``plumbline run``.
    """

    suite: SuiteArg = "smoke"
    # A plain default (pydantic copies it per instance), so the JSON schema shows it.
    models: ModelsArg = list(DEFAULT_MODELS)
    samples: SamplesArg = None
    temperature: TemperatureArg = None
    seed: SeedArg = None
    max_tokens: MaxTokensArg = None
    run_id: RunIdArg = None
    source: SourceArg = SOURCE_ON_DEMAND
    as_of: AsOfArg = None
    shard_size: ShardSizeArg = None
    workers: WorkersArg = None
    part: PartArg = None
    system_prompt: SystemPromptArg = None
    concurrency: ConcurrencyArg = None
    rpm_limit: RpmLimitArg = None
    tpm_limit: TpmLimitArg = None
    use_cache: UseCacheArg = False


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
    capped = limited_tags({provider_tag(p.model_id) for p in plan})
    try:
        progress_id = create_progress_artifact(
            progress=0.0 if total else 100.0, key="run-progress",
            description=f"Run `{config.run_id}`: {total} call(s)",
        )
        futures = [
            run_shard_task.with_options(
                tags={provider_tag(p.model_id)} & capped,
                task_run_name=f"run-shard {p.model_id} {p.index + 1}/{shard_count}",
            # quote(): Prefect would otherwise walk the suite and the cases twice per task (at
            # submit and at start) looking for futures inside them: most of a big run's CPU.
            ).submit(quote(suite), p.model_id, quote(p.cases), config, store, quote(p.skip),
                     options)
            for p in plan
        ]
        try:
            _follow(futures, [p.todo for p in plan], config.run_id, total, progress_id,
                    warm=_load_the_rest)
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


def provider_tag(model_id: str) -> str:
    """The tag a shard of ``model_id`` carries when a concurrency limit exists on it."""
    return f"provider:{split_model_id(model_id)[0]}"


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
    """A child's parameters as the run-suite flow takes them: each field top-level."""
    return fields


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


def _load_the_rest() -> None:
    """Import the Parquet writer (pyarrow, ~0.1 s) once the calls are under way.

    Not at start-up, where it would delay the first call, nor while the first shard's task run
    starts (the import would hold the interpreter lock that start needs): ``_follow`` calls it
    when the first cell is done, from the flow's thread, which only waits. The shards' first
    write would import it otherwise, in the middle of their calls.
    """
    import tasks.records.io  # noqa: F401


def _follow(futures: list[PrefectFuture[Any]], cells: list[int], run_id: str, total: int,
            progress_id: UUID, warm: Callable[[], None] | None = None) -> None:
    """Wait for the shards, moving the progress artifact as cells complete.

    Cells are counted as they finish when shards run in this process; with shards on other
    workers the count moves shard by shard instead. ``warm`` is called once, when the first
    cell is done (or after ``WARM_WAIT_S``).
    """
    pending = set(range(len(futures)))
    finished_cells = 0
    shown = 0.0
    warm_by = time.monotonic() + WARM_WAIT_S
    while pending:
        done, _ = wait([futures[i] for i in pending],
                       timeout=PROGRESS_EVERY_S if warm is None else WARM_POLL_S)
        for i in [i for i in pending if futures[i] in done]:
            pending.discard(i)
            finished_cells += cells[i]
        live, _ = PROGRESS.get(run_id)
        if warm is not None and (live or finished_cells or time.monotonic() >= warm_by):
            warm()
            warm = None
        percent = 100.0 * max(live, finished_cells) / total if total else 100.0
        if percent - shown >= 1.0 or (not pending and percent != shown):
            shown = min(100.0, percent)
            update_progress_artifact(progress_id, shown)


F = TypeVar("F")


def described_by(model: type[BaseModel]) -> Callable[[F], F]:
    """Append an ``Args:`` section to a flow function's docstring, one line per field of
    ``model``, with the field's description.

    Prefect's parameter schema (the UI's form) takes each parameter's description from the
    flow's docstring, not from the ``Field`` in its annotation (it overrides that one with its
    own); written from ``model``, the form and the model say the same thing.
    """
    def decorate(fn: F) -> F:
        lines = [f"    {name}: {' '.join((field.description or '').split())}"
                 for name, field in model.model_fields.items()]
        fn.__doc__ = f"{(fn.__doc__ or '').rstrip()}\n\nArgs:\n" + "\n".join(lines) + "\n"
        return fn

    return decorate


@flow(name="run-suite", log_prints=True)
@described_by(RunSuiteParams)
def run_suite(
    suite: SuiteArg = "smoke",
    # The form shows this default; Prefect validates (copies) the list before the body sees it.
    models: ModelsArg = DEFAULT_MODELS,
    samples: SamplesArg = None,
    temperature: TemperatureArg = None,
    seed: SeedArg = None,
    max_tokens: MaxTokensArg = None,
    run_id: RunIdArg = None,
    source: SourceArg = SOURCE_ON_DEMAND,
    as_of: AsOfArg = None,
    shard_size: ShardSizeArg = None,
    workers: WorkersArg = None,
    part: PartArg = None,
    system_prompt: SystemPromptArg = None,
    concurrency: ConcurrencyArg = None,
    rpm_limit: RpmLimitArg = None,
    tpm_limit: TpmLimitArg = None,
    use_cache: UseCacheArg = False,
) -> dict[str, Any] | State:
    """Run a prompt suite against models and keep every answer, scored, as Parquet rows."""
    params = RunSuiteParams(
        suite=suite, models=list(models), samples=samples, temperature=temperature, seed=seed,
        max_tokens=max_tokens, run_id=run_id, source=source, as_of=as_of,
        shard_size=shard_size, workers=workers, part=part, system_prompt=system_prompt,
        concurrency=concurrency, rpm_limit=rpm_limit, tpm_limit=tpm_limit, use_cache=use_cache,
    )
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
