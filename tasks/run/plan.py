"""What a run is before it calls anything: its resolved parameters, its shards and its parts.

``flows/run_suite.py`` maps one task over each (model × shard) this plans, never one per call.
By default a shard is a whole model (``shard_size=None``): its calls run concurrently on one
event loop, and every extra shard only adds fixed costs (a thread, a Prefect task run and its
state reports, an event loop, a provider client, a Parquet file; measured in docs/deploy.md).
A run is split further only into *parts* (``plan_parts``) when it spreads over workers as child
flow runs (``flows/spread.py``), and only when each part has enough cells to pay for a child.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.identity import SOURCE_ON_DEMAND, USER_SCHEDULER
from tasks.providers.base import split_model_id
from tasks.providers.pricing import load_pricing
from tasks.retry import RetryPolicy
from tasks.storage.layout import check_run_id
from tasks.suites.model import Case, Suite

DEFAULT_CONCURRENCY = 16

Cell = tuple[str, str, int]
"""(model_id, prompt_id, sample_idx): the unit a run must complete exactly once."""


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
    use_cache: bool = False


def new_run_id(suite: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", suite).strip("-.") or "run"
    return f"{name}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def resolve_config(suite: Suite, **overrides: Any) -> RunConfig:
    """Run parameters: explicit values win, then the suite's defaults."""
    d = suite.defaults
    pick = {k: v for k, v in overrides.items() if v is not None}
    run_id = pick.pop("run_id", None) or new_run_id(suite.name, pick.get("as_of"))
    return RunConfig(
        run_id=check_run_id(run_id),
        samples=pick.pop("samples", d.samples),
        temperature=pick.pop("temperature", d.temperature),
        max_tokens=pick.pop("max_tokens", d.max_tokens),
        seed=pick.pop("seed", d.seed),
        system_prompt=pick.pop("system_prompt", d.system_prompt),
        **pick,
    )


def shard_cases(cases: Sequence[Case], shard_size: int | None = None) -> list[list[Case]]:
    """The cases in shards of ``shard_size``; None: one shard of every case."""
    size = shard_size or max(1, len(cases))
    return [list(cases[i:i + size]) for i in range(0, len(cases), size)]


@dataclass(frozen=True)
class ShardPlan:
    """One (model × shard) with the cells it still has to call."""

    model_id: str
    index: int
    cases: list[Case]
    skip: frozenset[tuple[str, int]]
    todo: int


def plan_shards(
    cases: Sequence[Case], model_ids: Sequence[str], config: RunConfig,
    shard_size: int | None = None, completed: Collection[Cell] = frozenset(),
) -> list[ShardPlan]:
    """The shards that still have work, each knowing which of its cells are already done.

    ``shard_size`` None (the default): one shard per model.
    """
    plan = []
    for model_id in model_ids:
        for i, shard in enumerate(shard_cases(cases, shard_size)):
            cells = [(c.id, s) for c in shard for s in range(config.samples)]
            skip = frozenset(c for c in cells if (model_id, *c) in completed)
            if len(skip) < len(cells):
                plan.append(ShardPlan(model_id, i, shard, skip, len(cells) - len(skip)))
    return plan


@dataclass(frozen=True)
class PartPlan:
    """One part of a spread run: ``model_id`` on ``cases[start:stop]``, ``todo`` cells to call."""

    model_id: str
    start: int
    stop: int
    todo: int


def plan_parts(
    cases: Sequence[Case], model_ids: Sequence[str], samples: int, parts: int,
    completed: Collection[Cell] = frozenset(),
) -> list[PartPlan]:
    """Cut a run's remaining cells into about ``parts`` parts of similar size.

    A part is one model on a contiguous range of cases (so a child run reads and writes one
    model's cells); each model gets a share of the parts in proportion to its remaining cells,
    at least one if it has any. Ranges are cut where the remaining cells reach each part's
    share, so a resumed run's parts are even in the work left, not in cases.
    """
    todo_of = {m: [sum((m, c.id, s) not in completed for s in range(samples)) for c in cases]
               for m in model_ids}
    total = sum(sum(v) for v in todo_of.values())
    plan: list[PartPlan] = []
    if total == 0:
        return plan
    for model_id in model_ids:
        todo = todo_of[model_id]
        left = sum(todo)
        if left == 0:
            continue
        k = max(1, min(round(parts * left / total), left))
        share, start, acc, cut, acc_start = left / k, 0, 0, 1, 0
        for i, n in enumerate(todo):
            acc += n
            if cut < k and acc >= share * cut and acc > acc_start:
                plan.append(PartPlan(model_id, start, i + 1, acc - acc_start))
                start, cut, acc_start = i + 1, cut + 1, acc
        if acc > acc_start:
            plan.append(PartPlan(model_id, start, len(cases), acc - acc_start))
    return plan


def provider_options(
    model_ids: Iterable[str],
    *,
    limits: dict[str, dict[str, float]] | None = None,
    timeout: float | None = None,
    max_attempts: int | None = None,
    pricing_file: Path | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
    targets_file: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Factory options for the providers the models use, from settings and overrides.

    ``rpm``/``tpm`` (one run's override) apply to every provider of the run, the offline
    ``fake`` one included; it takes no timeout, retry policy or prices (it makes no request and
    costs nothing). ``targets_file`` is where the ``http`` prefix finds its targets.
    """
    options: dict[str, dict[str, Any]] = {}
    prefixes = sorted({split_model_id(m)[0] for m in model_ids})
    pricing = load_pricing(pricing_file)
    for prefix in prefixes:
        lim = dict((limits or {}).get(prefix, {}))
        if rpm is not None:
            lim["rpm"] = rpm
        if tpm is not None:
            lim["tpm"] = tpm
        opts: dict[str, Any] = {"limits": lim}
        if prefix != "fake":
            opts["pricing"] = pricing
            if timeout is not None:
                opts["timeout"] = timeout
            if max_attempts is not None:
                opts["retry"] = RetryPolicy(max_attempts=max_attempts)
        if prefix == "http" and targets_file is not None:
            opts["targets_file"] = targets_file
        options[prefix] = opts
    return options
