"""Every error Plumbline raises on purpose, in one small tree under ``PlumblineError``.

Failures of an LLM call are data (a row with ``error`` set), not exceptions; these errors are for
things a person must fix: a bad setting, a bad suite file, a bad request, an unreachable store.
Each carries the context a user needs to find the problem.
"""

from __future__ import annotations

from pathlib import Path


class PlumblineError(Exception):
    """Base class of every error Plumbline raises on purpose."""


class ConfigError(PlumblineError):
    """A setting is missing or invalid (names the setting)."""


class ProviderConfigError(ConfigError):
    """A provider cannot be used as configured (unknown prefix, missing API key, ...)."""


class StorageError(PlumblineError):
    """The object store could not complete an operation (names the key)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{message} (key: {key})" if key else message)


class SpoolError(PlumblineError):
    """The API's submission spool could not make a submission durable (disk full, closed, corrupt
    database)."""


class AuthError(PlumblineError):
    """A request's credentials are missing or invalid (the message says which)."""


class SubmitError(PlumblineError):
    """``plumbline submit`` cannot proceed (no results to send, a bad results file)."""


class CanaryFailed(PlumblineError):
    """One or more canary suites did not complete."""


class RunBusy(PlumblineError):
    """A run id is held by another flow run (or was taken over while this one ran)."""

    def __init__(self, message: str, *, run_id: str, holder: str | None = None) -> None:
        self.run_id = run_id
        self.holder = holder
        super().__init__(message)


class UpError(PlumblineError):
    """The stack could not be brought up (a port in use, a child that exited, a timeout)."""


class SuiteError(PlumblineError):
    """A suite file has a problem; ``problems`` lists every one found, each with file:line:field."""

    def __init__(self, problems: list[SuiteProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"suite has {len(problems)} {noun}:\n{lines}")


class SuiteProblem:
    """One problem in a suite file, located as precisely as possible."""

    def __init__(
        self, file: Path | str, message: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f" [{self.field}]" if self.field else ""
        return f"{where}:{what} {self.message}"

    def __repr__(self) -> str:
        return f"SuiteProblem({self!s})"
