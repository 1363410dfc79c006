"""The run engine: (model × cases × samples) → provider calls → scores → records in storage.

Plain async functions, testable without Prefect; ``flows/run_suite.py`` maps them over
(model × shard of cases), never one Prefect task per LLM call.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.registry import ProviderRegistry
from tasks.records_io import write_records
from tasks.schema import SOURCE_ON_DEMAND, USER_SCHEDULER, make_record
from tasks.scorers import ScoreContext, score
from tasks.storage.base import ObjectStore
from tasks.suites import Case, Suite

DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class RunConfig:
    """Resolved parameters of one run (the suite's defaults already applied)."""

    run_id: str
    samples: int
    temperature: float
    max_tokens: int
    seed: int | None
    system_prompt: str | None = None
    source: str = SOURCE_ON_DEMAND
    user_id: str = USER_SCHEDULER
    as_of: datetime | None = None
    concurrency: int = DEFAULT_CONCURRENCY


def new_run_id(suite: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{suite}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def resolve_config(suite: Suite, **overrides: Any) -> RunConfig:
    """Run parameters: explicit values win, then the suite's defaults."""
    d = suite.defaults
    pick = {k: v for k, v in overrides.items() if v is not None}
    return RunConfig(
        run_id=pick.pop("run_id", None) or new_run_id(suite.name, pick.get("as_of")),
        samples=pick.pop("samples", d.samples),
        temperature=pick.pop("temperature", d.temperature),
        max_tokens=pick.pop("max_tokens", d.max_tokens),
        seed=pick.pop("seed", d.seed),
        system_prompt=pick.pop("system_prompt", d.system_prompt),
        **pick,
    )


def shard_cases(cases: Sequence[Case], shard_size: int) -> list[list[Case]]:
    return [list(cases[i:i + shard_size]) for i in range(0, len(cases), shard_size)]


async def run_cells(
    suite: Suite,
    model_id: str,
    cases: Sequence[Case],
    config: RunConfig,
    registry: ProviderRegistry,
    on_done: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Call ``model_id`` on every (case, sample), score each, return one record per cell."""
    provider, model = registry.for_model(model_id)
    limit = asyncio.Semaphore(config.concurrency)
    ctx = ScoreContext(model_id=model_id)

    async def cell(case: Case, sample_idx: int) -> dict[str, Any]:
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
        async with limit:
            started = time.perf_counter()
            try:
                completion = await provider.complete(model, request)
            except Exception as exc:  # a provider bug is still a row, not a lost cell
                completion = Completion(
                    None, error=f"{type(exc).__name__}: {exc}",
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
        result = await score(completion.text, case, ctx) if completion.ok else None
        if on_done is not None:
            on_done(1)
        return build_record(suite, model_id, case, sample_idx, config, completion, result)

    jobs = [cell(c, s) for c in cases for s in range(config.samples)]
    return list(await asyncio.gather(*jobs))


def build_record(
    suite: Suite,
    model_id: str,
    case: Case,
    sample_idx: int,
    config: RunConfig,
    completion: Completion,
    result: Any,
) -> dict[str, Any]:
    ts = config.as_of or datetime.now(UTC)
    return make_record(
        timestamp=ts,
        user_id=config.user_id,
        model_id=model_id,
        prompt_id=case.id,
        output=completion.text,
        metadata_json=json.dumps(
            {"difficulty": case.metadata.get("difficulty"), "tags": case.metadata.get("tags")},
            separators=(",", ":"),
        ),
        run_id=config.run_id,
        source=config.source,
        suite=suite.name,
        suite_version=suite.version,
        suite_hash=suite.hash,
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


def run_shard(
    suite: Suite,
    model_id: str,
    cases: Sequence[Case],
    config: RunConfig,
    store: ObjectStore,
    registry: ProviderRegistry | None = None,
) -> list[dict[str, Any]]:
    """Run one (model × shard) and write its rows as one Parquet file; return the records."""

    async def go() -> list[dict[str, Any]]:
        reg = registry or ProviderRegistry()
        try:
            return await run_cells(suite, model_id, cases, config, reg)
        finally:
            if registry is None:
                await reg.aclose()

    records = asyncio.run(go())
    write_records(store, records, user_id=config.user_id, source=config.source)
    return records


SUMMARY_COLUMNS = ("model_id", "cases", "rows", "pass_rate", "errors", "input_tokens",
                   "output_tokens", "cost_usd", "latency_p50_ms", "latency_p95_ms")


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: cases, rows, pass rate, errors, tokens, cost, p50/p95 latency."""
    if not records:
        return []
    df = pl.DataFrame(
        {k: [r[k] for r in records] for k in (
            "model_id", "prompt_id", "passed", "error", "input_tokens", "output_tokens",
            "cost_usd", "latency_ms")},
        schema_overrides={"cost_usd": pl.Float64, "latency_ms": pl.Float64,
                          "input_tokens": pl.Int64, "output_tokens": pl.Int64,
                          "passed": pl.Boolean, "error": pl.String},
    )
    out = (
        df.group_by("model_id")
        .agg(
            cases=pl.col("prompt_id").n_unique(),
            rows=pl.len(),
            pass_rate=pl.col("passed").cast(pl.Float64).mean(),
            errors=pl.col("error").is_not_null().sum(),
            input_tokens=pl.col("input_tokens").sum(),
            output_tokens=pl.col("output_tokens").sum(),
            # Unknown prices stay unknown: a sum with any null cost is null, not an undercount.
            cost_usd=pl.when(pl.col("cost_usd").is_null().any()).then(None)
            .otherwise(pl.col("cost_usd").sum()),
            latency_p50_ms=pl.col("latency_ms").quantile(0.5, "linear"),
            latency_p95_ms=pl.col("latency_ms").quantile(0.95, "linear"),
        )
        .sort("model_id")
    )
    return out.select(SUMMARY_COLUMNS).to_dicts()
