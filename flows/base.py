"""What every Plumbline flow is made with: Prefect's ``Flow``, with a lighter parameter encoder.

When a flow run is created, Prefect stores its parameters as JSON, converted by FastAPI's
``jsonable_encoder``: the first flow run of a process imports FastAPI for it (0.2 s of a
``plumbline run`` that otherwise needs no web framework, and of every flow run a worker starts).
``PlumblineFlow`` converts them with pydantic's ``to_jsonable_python`` instead, which gives the
same JSON values for what our flows take (strings, numbers, lists, dicts, datetimes as ISO
strings, pydantic models as their fields); a value it cannot convert is stored as
``<TypeName>``, as Prefect does. tests/flows/test_base.py checks that every parameter of the
UI's form reads back from what is stored.

``limited_tags`` says which task tags have a Prefect concurrency limit, so that a flow tags its
tasks with those only (see there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.futures import PrefectFuture
from prefect.states import State
from pydantic_core import PydanticSerializationError, to_jsonable_python

P = ParamSpec("P")
R = TypeVar("R")


class PlumblineFlow(Flow[P, R]):
    """A Prefect flow whose stored parameters are made without importing FastAPI."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        serialized: dict[str, Any] = {}
        for key, value in parameters.items():
            if isinstance(value, PrefectFuture | State):
                # Not read (Prefect does the same): a future or a state is not a value yet.
                serialized[key] = f"<{type(value).__name__}>"
                continue
            try:
                serialized[key] = to_jsonable_python(value)
            except (PydanticSerializationError, TypeError, ValueError, RecursionError):
                serialized[key] = f"<{type(value).__name__}>"
        return serialized


def flow(**options: Any) -> Callable[[Callable[P, R]], PlumblineFlow[P, R]]:
    """``@flow(name=..., log_prints=...)`` as Prefect's decorator takes them, making a
    ``PlumblineFlow``."""

    def make(fn: Callable[P, R]) -> PlumblineFlow[P, R]:
        return PlumblineFlow(fn, **options)

    return make


def limited_tags(tags: set[str]) -> set[str]:
    """Those of ``tags`` that a Prefect concurrency limit exists on (``prefect concurrency-limit
    create <tag> N``), asked of the API once per tag.

    A task run with any tag first asks Prefect's slot service for that tag's limit, through a
    thread and a client of its own, even when there is none: 0.08-0.13 s before the first shard
    of a run could start. A flow that tags a task only with the tags found here keeps every cap
    and skips that cost when nothing is capped. A limit created while a run is under way applies
    from the next run.
    """
    found: set[str] = set()
    with get_client(sync_client=True) as client:  # inside a flow run: the run's own client
        for tag in sorted(tags):
            try:
                client.read_global_concurrency_limit_by_name(f"tag:{tag}")
            except ObjectNotFound:
                continue
            except Exception:  # cannot tell (the API erred): tagged, so a limit is never skipped
                pass
            found.add(tag)
    return found
