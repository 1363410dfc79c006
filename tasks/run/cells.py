"""The call loop of one (model × shard): concurrent provider calls, each scored into one record.

Inside a shard the calls run on one event loop, one shared HTTP client per provider.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.registry import ProviderRegistry
from tasks.records.schema import make_record
from tasks.run.cache import ResponseCache
from tasks.run.plan import RunConfig
from tasks.scorers import ScoreContext, score
from tasks.suites.model import Case, Suite

# How often a shard looks at its stop flag (a cancelled run, a lost run-id lease).
STOP_POLL_S = 0.2

_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextmanager
def _gc_tuned_for_run() -> Iterator[None]:
    """Fewer, cheaper garbage collections while a run's calls are in flight.

    Each call allocates thousands of short-lived objects (SDK models, headers, records); with the
    default thresholds the collector runs constantly and its full passes walk every object that
    Prefect, pydantic and the SDKs keep alive, stalling the event loop while answers wait. The
    long-lived heap is frozen out of collection and the young-generation threshold raised while
    any run is active (shards run concurrently in threads, and these settings are process-wide,
    hence the count), then both are restored. Measured in docs/benchmarks.md.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_gc_saved[0], 50_000), _gc_saved[1], _gc_saved[2])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


async def run_cells(
    suite: Suite,
    model_id: str,
    cases: Sequence[Case],
    config: RunConfig,
    registry: ProviderRegistry,
    on_done: Callable[[int], None] | None = None,
    *,
    skip: Collection[tuple[str, int]] = (),
    cache: ResponseCache | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """Call ``model_id`` on every (case, sample) not in ``skip``; one scored record per cell.

    At most ``config.concurrency`` calls are in flight. A call that fails, even by raising, is
    a record with ``error`` set: no cell is ever lost.

    Once ``should_stop()`` turns true (checked every ``STOP_POLL_S``), no new call starts and the
    calls in flight are abandoned: the records already made are returned (and were passed to
    ``on_record``); the abandoned cells have no row, so resuming the run calls them again.
    """
    provider, model = registry.for_model(model_id)
    # A judge scorer reuses the run's providers: one client and one set of limits per provider.
    ctx = ScoreContext(model_id=model_id, extras={"registry": registry})
    # Computed once: the hash covers every case, and a shard builds thousands of records.
    suite_hash = suite.hash
    skipped = set(skip)
    todo = [(c, s) for c in cases for s in range(config.samples) if (c.id, s) not in skipped]
    records: list[dict[str, Any]] = []

    # `concurrency` bounds the requests in flight, not the cells being worked on: scoring and
    # record building happen outside this bound, so a slot is never idle while its last answer
    # is being scored.
    in_flight = asyncio.Semaphore(config.concurrency)

    async def call(request: CompletionRequest) -> Completion:
        if cache is not None:
            hit = await cache.get(model_id, request)
            if hit is not None:
                return hit
        started = time.perf_counter()
        try:
            async with in_flight:
                completion = await provider.complete(model, request)
        except Exception as exc:  # a provider bug is still a row, not a lost cell
            completion = Completion(
                None, error=f"{type(exc).__name__}: {exc}",
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        if cache is not None:
            await cache.put(model_id, request, completion)
        return completion

    async def cell(case: Case, sample_idx: int) -> None:
        request = CompletionRequest(
            messages=case.messages(config.system_prompt),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=config.seed,
            sample_idx=sample_idx,
            prompt_id=case.id,
            reference=case.ideals[0] if case.ideals else None,
            as_of=config.as_of,
        )
        completion = await call(request)
        result = await score(completion.text, case, ctx) if completion.ok else None
        record = build_record(suite, model_id, case, sample_idx, config, completion, result,
                              suite_hash=suite_hash)
        records.append(record)
        if on_record is not None:
            on_record(record)
        if on_done is not None:
            on_done(1)

    # A fixed pool of workers rather than one task per cell: a 100k-cell shard stays cheap.
    queue = iter(todo)

    async def worker() -> None:
        for case, sample_idx in queue:
            if should_stop is not None and should_stop():
                return
            await cell(case, sample_idx)

    # A few more workers than request slots keep every slot busy while others post-process.
    count = max(1, min(config.concurrency + max(2, config.concurrency // 4), len(todo)))
    with _gc_tuned_for_run():
        workers = [asyncio.ensure_future(worker()) for _ in range(count)]
        watcher = None if should_stop is None else asyncio.ensure_future(
            _stop_when(should_stop, workers))
        try:
            results = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    for result in results:
        # A worker cancelled by the stop flag ends quietly; anything else is a bug to surface.
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    return records


async def _stop_when(should_stop: Callable[[], bool], workers: list[asyncio.Future[None]]
                     ) -> None:
    """Cancel the workers' calls in flight as soon as ``should_stop()`` says so."""
    while not should_stop():
        if all(w.done() for w in workers):
            return
        await asyncio.sleep(STOP_POLL_S)
    for w in workers:
        w.cancel()


def build_record(
    suite: Suite,
    model_id: str,
    case: Case,
    sample_idx: int,
    config: RunConfig,
    completion: Completion,
    result: Any,
    *,
    suite_hash: str | None = None,
) -> dict[str, Any]:
    ts = config.as_of or datetime.now(UTC)
    meta: dict[str, Any] = {"difficulty": case.metadata.get("difficulty"),
                            "tags": case.metadata.get("tags")}
    if completion.cached:
        meta["cached"] = True
    if completion.attempts > 1:
        meta["attempts"] = completion.attempts
    return make_record(
        timestamp=ts,
        user_id=config.user_id,
        model_id=model_id,
        prompt_id=case.id,
        output=completion.text,
        metadata_json=json.dumps(meta, separators=(",", ":")),
        run_id=config.run_id,
        source=config.source,
        suite=suite.name,
        suite_version=suite.version,
        suite_hash=suite_hash or suite.hash,
        category=case.category,
        sample_idx=sample_idx,
        temperature=config.temperature,
        seed=config.seed,
        passed=None if result is None else result.passed,
        score=None if result is None else result.score,
        assertion_type=case.assertion_type,
        score_reason=None if result is None else result.reason,
        finish_reason=completion.finish_reason,
        latency_ms=completion.latency_ms,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cost_usd=completion.cost_usd,
        error=completion.error,
    )
