"""One (model × shard) of a run, start to end: the calls, their rows written as they come.

Plain functions, testable without Prefect; ``flows/run_suite.py`` maps ``run_shard`` over
(model × shard of cases), never one Prefect task per LLM call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Coroutine, Sequence
from typing import Any, TypeVar

from tasks.providers.registry import ProviderRegistry
from tasks.run.cache import ResponseCache
from tasks.run.cells import run_cells
from tasks.run.plan import RunConfig
from tasks.run.progress import PROGRESS
from tasks.run.sink import FLUSH_ROWS, FLUSH_SECONDS, RecordSink
from tasks.storage.base import ObjectStore
from tasks.suites.model import Case, Suite

T = TypeVar("T")


def run_shard(
    suite: Suite,
    model_id: str,
    cases: Sequence[Case],
    config: RunConfig,
    store: ObjectStore,
    registry: ProviderRegistry | None = None,
    *,
    skip: Collection[tuple[str, int]] = (),
    provider_options: dict[str, dict[str, Any]] | None = None,
    flush_rows: int = FLUSH_ROWS,
    flush_seconds: float = FLUSH_SECONDS,
) -> list[dict[str, Any]]:
    """Run one (model × shard), writing rows as they come; return the new records.

    ``skip`` holds the (prompt_id, sample_idx) cells this model already completed. The shard
    stops early, keeping the rows it has, once ``PROGRESS.request_stop(run_id)`` is called.
    """

    async def go() -> list[dict[str, Any]]:
        reg = registry or ProviderRegistry(options=provider_options)
        sink = RecordSink(store, config, flush_rows=flush_rows, flush_seconds=flush_seconds)
        cache = ResponseCache(store) if config.use_cache else None
        try:
            return await run_cells(
                suite, model_id, cases, config, reg,
                on_done=lambda n: PROGRESS.advance(config.run_id, n),
                skip=skip, cache=cache, on_record=sink.add,
                should_stop=lambda: PROGRESS.stop_requested(config.run_id),
            )
        finally:
            try:
                await sink.aclose()
            finally:
                if registry is None:
                    await reg.aclose()

    return run_async(go())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a shard's event loop: uvloop when installed (it comes with uvicorn[standard]).

    uvloop cuts the CPU the loop and sockets take per call by about a fifth; with tens of
    calls in flight that CPU, not the network, is what bounds a shard's throughput.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
