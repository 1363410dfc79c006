"""What several commands share: the ``--verbose``, ``--host`` and ``--port`` options, quieting
Prefect's logs for commands that run flows in this process, and finding the Prefect API they
report to (a configured server when it answers, else Prefect's ephemeral one)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Annotated

from cyclopts import Parameter

Verbose = Annotated[
    bool, Parameter(name=["--verbose", "-v"], negative="", help="Show Prefect's own logs.")
]
Host = Annotated[str, Parameter(help="Interface to listen on.")]
Port = Annotated[int, Parameter(help="Port to listen on.")]


def quiet_prefect(verbose: bool) -> None:
    """Keep Prefect's own chatter off the terminal unless ``--verbose`` asks for it."""
    # No internet here or on many servers: Prefect's telemetry would only log errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # The embedded server logs its own shutdown (pending event flushes being cancelled) as
        # errors; they are not the user's problem. --verbose shows them.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


# How long `plumbline run` waits for a configured Prefect server's health check: a server on
# this machine or the network answers in milliseconds; a dead one must not hold up the run.
HEALTH_TIMEOUT_S = 1.5
START_SERVER_HINT = (
    "start one with `prefect server start` (or `plumbline up`) and "
    "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"
)


@dataclass(frozen=True)
class PrefectTarget:
    """The Prefect API a command's flow runs report to, and how the user hears about it.

    ``url`` is None for Prefect's ephemeral API (a temporary server this process starts and
    stops); ``problem`` is set when a server is configured but does not answer.
    """

    url: str | None
    origin: str
    problem: str | None = None

    def line(self) -> str:
        """One line for the terminal saying where the run's flow run goes."""
        if self.url is None:
            return ("Prefect: no server configured, so a temporary local Prefect API runs this "
                    "(seconds to start and stop). For faster runs you can watch in the UI, "
                    f"{START_SERVER_HINT}.")
        return f"Prefect: using the server at {self.url} ({self.origin}); the run is in its UI."


def prefect_target(timeout_s: float = HEALTH_TIMEOUT_S) -> PrefectTarget:
    """The server ``PREFECT_API_URL`` or the active Prefect profile names, health-checked.

    Prefect itself reads the same setting: with no URL it starts its ephemeral API; with a URL
    it uses that server and, when the server is down, retries for a long while before failing.
    The probe answers that question first, in at most ``timeout_s``.
    """
    from prefect.context import get_settings_context
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return PrefectTarget(None, "ephemeral")
    origin = ("PREFECT_API_URL" if os.environ.get("PREFECT_API_URL")
              else f"Prefect profile '{get_settings_context().profile.name}'")
    problem = probe_health(url, timeout_s)
    return PrefectTarget(url, origin, problem)


def probe_health(url: str, timeout_s: float) -> str | None:
    """Why the Prefect API at ``url`` is not usable, or None when ``/health`` answers 200."""
    request = urllib.request.Request(url.rstrip("/") + "/health")
    key = os.environ.get("PREFECT_API_KEY")
    if key:  # Prefect Cloud checks it
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, no such host, a malformed URL
        reason = getattr(exc, "reason", None) or exc
        return f"no answer within {timeout_s:g} s ({reason})"
    return None if status == 200 else f"its /health answered HTTP {status}"
