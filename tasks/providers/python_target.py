"""``python/<module>:<function>`` targets: a prompt pipeline or agent in Python, evaluated like a
model.

The function takes one ``TargetCall`` (the case's input and messages, the call's parameters) and
returns the answer: a string, a ``TargetResult``, any object with a ``text`` attribute (and
optionally ``input_tokens``/``output_tokens``), or a dict with those keys. It may be sync or
async. The module is imported from ``PYTHONPATH`` or, failing that, the working directory; a
module or function that is not there is a ``ProviderConfigError`` when the run checks its
models, before any call.

Async functions run on the shard's event loop; sync ones in a thread pool of ``max_in_flight``
threads, so they never block the loop. The call is bounded by the run's timeout. An exception is
an error row with its type and message, and the run goes on: the function is the user's code, and
its exception says what it wants to say, so it is not retried.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tasks.errors import ProviderConfigError
from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.http_base import DEFAULT_TIMEOUT_S, token_estimate
from tasks.providers.limits import InflightGate, ProviderLimits, RateLimiter, shared_limits
from tasks.providers.pricing import PriceTable, load_pricing
from tasks.providers.target_call import TargetCall, TargetResult

_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,99}"
MODULE_PATH = re.compile(rf"{_IDENT}(?:\.{_IDENT}){{0,15}}")
FUNCTION_NAME = re.compile(_IDENT)
# Errors become rows; a traceback's message can be long.
_MAX_ERROR_LEN = 500

TargetFunction = Callable[[TargetCall], Any]


def parse_target(model: str) -> tuple[str, str]:
    """``"my_rag.pipeline:answer"`` → ``("my_rag.pipeline", "answer")``, checked."""
    module, sep, function = model.partition(":")
    if not sep or not MODULE_PATH.fullmatch(module) or not FUNCTION_NAME.fullmatch(function):
        raise ProviderConfigError(
            f"python target {model[:200]!r} must be 'module.path:function' (dotted Python "
            "identifiers, for example 'python/my_pipeline:answer')")
    return module, function


def load_function(model: str) -> TargetFunction:
    """Import the target's module and return its function; a clear error if either is missing."""
    module_name, function_name = parse_target(model)
    where = f"python target 'python/{model}'"
    _add_working_directory()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The module itself (or a package on its path) is missing, not one of its imports.
        if exc.name is not None and (exc.name == module_name
                                     or module_name.startswith(exc.name + ".")):
            raise ProviderConfigError(
                f"{where}: no module named {module_name!r} (looked in PYTHONPATH and the working "
                f"directory {os.getcwd()})") from None
        raise ProviderConfigError(f"{where}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # the user's module failed while importing: say how
        raise ProviderConfigError(
            f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ProviderConfigError(f"{where}: module {module_name!r} has no {function_name!r}")
    if not callable(function):
        raise ProviderConfigError(f"{where}: {module_name}.{function_name} is a "
                                  f"{type(function).__name__}, not a function")
    return function  # type: ignore[no-any-return]


def _add_working_directory() -> None:
    # Appended, not prepended: a file in the working directory must not shadow an installed
    # module (a stray json.py would otherwise replace the standard library's).
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def to_result(value: Any) -> TargetResult:
    """What the function returned, read as a result; ``TypeError`` naming what was wrong."""
    if isinstance(value, str):
        return TargetResult(value)
    if isinstance(value, TargetResult):
        fields: Mapping[str, Any] = value.__dict__
    elif isinstance(value, Mapping):
        fields = value
    elif hasattr(value, "text"):
        fields = {k: getattr(value, k, None) for k in
                  ("text", "input_tokens", "output_tokens", "finish_reason")}
    else:
        raise TypeError(f"the target returned a {type(value).__name__}; expected a string, a "
                        "dict or an object with 'text'")
    text = fields.get("text")
    if not isinstance(text, str):
        raise TypeError(f"the target's result has text of type {type(text).__name__}, "
                        "expected a string")
    counts = {}
    for key in ("input_tokens", "output_tokens"):
        count = fields.get(key)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 0):
            raise TypeError(f"the target's result has {key}={count!r}; expected a "
                            "non-negative integer or None")
        counts[key] = count
    finish = fields.get("finish_reason")
    return TargetResult(text, counts["input_tokens"], counts["output_tokens"],
                        finish if isinstance(finish, str) else None)


def is_async(function: Any) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        type(function).__call__)


class PythonTargetProvider:
    """The ``python`` prefix. ``functions`` maps a target to a callable (tests); ``retry`` is
    accepted for symmetry with the other providers and not used."""

    name = "python"

    def __init__(
        self,
        *,
        limits: ProviderLimits | Mapping[str, Any] | None = None,
        timeout: float | None = None,
        pricing: PriceTable | None = None,
        functions: Mapping[str, TargetFunction] | None = None,
        retry: Any = None,
    ) -> None:
        self.limits = ProviderLimits.from_mapping(
            "limits for provider 'python' (PLUMBLINE_PROVIDER_LIMITS or the run's limits)",
            limits)
        self.timeout = timeout or DEFAULT_TIMEOUT_S
        if self.timeout <= 0:
            raise ProviderConfigError("provider 'python': timeout must be positive")
        self.pricing = pricing or load_pricing()
        self._functions: dict[str, TargetFunction] = dict(functions or {})
        self._gates: dict[str, tuple[RateLimiter, InflightGate]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def function(self, model: str) -> TargetFunction:
        found = self._functions.get(model)
        if found is None:
            found = self._functions[model] = load_function(model)
        return found

    def check_model(self, model: str) -> None:
        self.function(model)

    def _limits_of(self, model: str) -> tuple[RateLimiter, InflightGate]:
        pair = self._gates.get(model)
        if pair is None:
            # Per function, shared by every shard of the process, as an endpoint's are.
            pair = self._gates[model] = shared_limits(f"python/{model}", self.limits)
        return pair

    async def complete(self, model: str, request: CompletionRequest) -> Completion:
        try:
            function = self.function(model)
        except ProviderConfigError as exc:
            return Completion(None, error=str(exc), attempts=0)
        limiter, gate = self._limits_of(model)
        reserve = token_estimate(request) if limiter.tpm else 0
        await limiter.acquire(reserve)
        call = TargetCall.from_request(model, request)
        async with gate:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout):
                    result = to_result(await self._call(function, call))
            except TimeoutError:
                error = f"timeout: no answer within {self.timeout:g}s"
            except Exception as exc:  # the user's code: any exception is this cell's error row
                error = f"{type(exc).__name__}: {exc}"
            else:
                error = None
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
        if error is not None:
            limiter.settle(reserve, 0)
            if len(error) > _MAX_ERROR_LEN:
                error = error[:_MAX_ERROR_LEN] + "…"
            return Completion(None, error=error, latency_ms=latency_ms)
        used = (result.input_tokens or 0) + (result.output_tokens or 0)
        limiter.settle(reserve, used if used else reserve)
        return Completion(
            text=result.text, finish_reason=result.finish_reason,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens,
            latency_ms=latency_ms,
            cost_usd=self.pricing.cost(f"python/{model}", result.input_tokens,
                                       result.output_tokens),
        )

    async def _call(self, function: TargetFunction, call: TargetCall) -> Any:
        if is_async(function):
            return await function(call)
        if self._pool is None:
            # Sized to the in-flight bound: asyncio's default pool has min(32, cpus + 4)
            # threads, which would cap a slow sync pipeline far below the run's concurrency.
            self._pool = ThreadPoolExecutor(max_workers=self.limits.max_in_flight,
                                            thread_name_prefix="plumbline-python-target")
        value = await asyncio.get_running_loop().run_in_executor(self._pool, function, call)
        if inspect.isawaitable(value):  # a sync wrapper that hands back a coroutine
            value = await value
        return value

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # A sync call past its timeout still holds its thread; do not wait for it.
            pool.shutdown(wait=False, cancel_futures=True)
