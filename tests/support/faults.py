"""Fault injection through a delegating store: a crash or another worker at an exact operation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.storage.base import ObjectInfo, ObjectStore


class Crash(Exception):
    """The process died here."""


class Interrupting:
    """A store that runs ``action`` at its ``at``-th operation (0-based), before or after it.

    ``action`` raising ``Crash`` simulates the process dying there; an action that writes or
    compacts simulates another worker acting at exactly that moment.
    """

    def __init__(
        self, inner: ObjectStore, at: int, action: Callable[[], None], *, after: bool = False,
        writes_only: bool = False,
    ) -> None:
        self.inner, self.at, self.action, self.after = inner, at, action, after
        self.writes_only = writes_only  # count only put/delete (crashing in a read is the same
        self.ops = 0  # as crashing before the next write)

    def _op(self, fn: Callable[[], Any], write: bool = False) -> Any:
        if self.writes_only and not write:
            return fn()
        n = self.ops
        self.ops += 1
        if n == self.at and not self.after:
            self.action()
        result = fn()
        if n == self.at and self.after:
            self.action()
        return result

    def put(self, key: str, data: bytes) -> None:
        self._op(lambda: self.inner.put(key, data), write=True)

    def get(self, key: str) -> bytes:
        return self._op(lambda: self.inner.get(key))  # type: ignore[no-any-return]

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self._op(lambda: self.inner.list(prefix))  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        self._op(lambda: self.inner.delete(key), write=True)

    def exists(self, key: str) -> bool:
        return self._op(lambda: self.inner.exists(key))  # type: ignore[no-any-return]

    def describe(self) -> str:
        return self.inner.describe()

    def local_path(self, key: str) -> Path | None:
        return self.inner.local_path(key)
