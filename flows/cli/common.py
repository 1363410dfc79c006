"""What several commands share: the ``--verbose``, ``--host`` and ``--port`` options, and quieting
Prefect's logs for commands that run flows in this process."""

from __future__ import annotations

import os
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
