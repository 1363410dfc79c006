"""API keys: an explicit value, else the provider's usual environment variable, else a Prefect
``Secret`` block; a required key that is nowhere is a ``ProviderConfigError`` before any call.

Keys are resolved in the process that makes the calls and are never passed as task or flow
parameters (Prefect shows parameters in its UI). Within one flow run a Secret block is asked for
once: the flow's provider check and its shard tasks (threads of the same process) share the
answer, found or not, instead of each asking the API again before its first call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from tasks.errors import ProviderConfigError


def secret_block_name(env_name: str) -> str:
    """``OPENAI_API_KEY`` → ``openai-api-key``: the Secret block name looked up by default."""
    return env_name.lower().replace("_", "-")


def resolve_api_key(
    provider: str,
    env_names: Sequence[str],
    *,
    explicit: str | None = None,
    secret_block: str | None = None,
    required: bool = True,
) -> str | None:
    """The key for ``provider``; raises ``ProviderConfigError`` naming where it was looked for."""
    if explicit:
        return explicit
    for name in env_names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    block = secret_block or secret_block_name(env_names[0])
    value = _load_secret(block)
    if value:
        return value
    if not required:
        return None
    raise ProviderConfigError(
        f"provider {provider!r} needs an API key: set {' or '.join(env_names)}, or create a "
        f"Prefect Secret block named {block!r}"
    )


class _RunSecrets:
    """The Secret blocks looked up during the current flow run (found or not), by name; an
    answer is only reused within the flow run that asked (its shard tasks included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run: object = None
        self._values: dict[str, str | None] = {}

    def get(self, run: object, name: str) -> tuple[bool, str | None]:
        with self._lock:
            if run is None or run != self._run or name not in self._values:
                return False, None
            return True, self._values[name]

    def put(self, run: object, name: str, value: str | None) -> None:
        if run is None:
            return
        with self._lock:
            if run != self._run:  # a new flow run in this process: forget the last one's
                self._run, self._values = run, {}
            self._values[name] = value


_RUN_SECRETS = _RunSecrets()


def _flow_run_id() -> object:
    """The flow run under way in this thread (a task run's flow run), or None."""
    from prefect.context import FlowRunContext, TaskRunContext

    task = TaskRunContext.get()
    if task is not None:
        return task.task_run.flow_run_id
    flow = FlowRunContext.get()
    return flow.flow_run.id if flow is not None and flow.flow_run is not None else None


def _load_secret(name: str) -> str | None:
    # Only when a Prefect API is there to ask: outside a run and without an API URL, Prefect
    # would start a temporary server just to find that the block does not exist.
    if not _prefect_api_available():
        return None
    run = _flow_run_id()
    known, value = _RUN_SECRETS.get(run, name)
    if not known:
        value = _ask_secret(name)
        _RUN_SECRETS.put(run, name, value)
    return value


def _ask_secret(name: str) -> str | None:
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(name, _sync=True).get()  # type: ignore[call-arg]
    except Exception:  # no such block, or the API is unreachable: the key is simply not there
        return None
    return str(value).strip() or None if value is not None else None


def _prefect_api_available() -> bool:
    """A flow or task run is under way, or an API URL is configured (environment or profile)."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.settings import PREFECT_API_URL
    except ImportError:
        return False
    if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        return True
    return bool(PREFECT_API_URL.value())
