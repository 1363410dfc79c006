"""What every Plumbline flow is made with: Prefect's ``Flow``, with a lighter parameter encoder.

When a flow run is created, Prefect stores its parameters as JSON, converted by FastAPI's
``jsonable_encoder``: the first flow run of a process imports FastAPI for it (0.2 s of a
``plumbline run`` that otherwise needs no web framework, and of every flow run a worker starts).
``PlumblineFlow`` converts them with pydantic's ``to_jsonable_python`` instead, which gives the
same JSON values for what our flows take (strings, numbers, lists, dicts, datetimes as ISO
strings, pydantic models as their fields); a value it cannot convert is stored as
``<TypeName>``, as Prefect does. tests/flows/test_base.py checks that every parameter of the
UI's form reads back from what is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow
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
