"""``plumbline run``: the ``run-suite`` flow from a terminal, its options made from the flow's own
``RunSuiteParams`` (the fields of the Prefect UI's form, with the same bounds and descriptions),
plus what only a terminal needs: ``--data-dir``, ``--ephemeral`` and ``--verbose``.

The flow run goes to the Prefect server that ``PREFECT_API_URL`` or the active Prefect profile
names when it answers a health check, else to Prefect's ephemeral API; one line says which. A
server that is configured but does not answer stops the command (exit 2) with what to do:
start it, or pass ``--ephemeral``. Falling back silently would hide the run from the UI the
user set up, and skip the concurrency limits kept on that server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_origin

from cyclopts import Parameter
from prefect.settings import (
    PREFECT_API_URL,
    temporary_settings,
)
from pydantic import create_model
from pydantic.fields import FieldInfo

from flows.cli.common import (
    EphemeralServer,
    PrefectTarget,
    Verbose,
    prefect_target,
    prefetch,
    resume_gc,
    take_early_server,
)
from flows.cli.progress import TerminalProgress
from flows.cli.tables import print_table
from flows.run_suite import RunSuiteParams, run_suite, shipped_suites
from tasks.errors import PlumblineError
from tasks.run.summary import SUMMARY_COLUMNS

# The CLI's default stays the one offline model it always ran (the flow's form defaults to two).
CLI_MODELS = ["fake/stable"]
DATA_DIR_ENV = "PLUMBLINE_DATA_DIR"

# pydantic keeps bounds as annotated-types objects (Ge, Le, MinLen...), one attribute each.
_BOUNDS = (("ge", "≥ {}"), ("gt", "> {}"), ("le", "≤ {}"), ("lt", "< {}"),
           ("min_length", "at least {}"), ("max_length", "at most {}"))


def bounds(field: FieldInfo) -> str:
    """A field's constraints as a reader writes them, e.g. ``≥ 1, ≤ 100``; empty if none."""
    parts = [
        template.format(getattr(meta, attr))
        for meta in field.metadata
        for attr, template in _BOUNDS
        if getattr(meta, attr, None) is not None
    ]
    return ", ".join(parts)


def option_help(name: str, field: FieldInfo) -> str:
    """The help of the option made from ``field``: its description, then its bounds (for the
    suite, the shipped suites a name can choose from, as the UI's drop-down lists them)."""
    text = field.description or ""
    if name == "suite":
        text = f"{text} Shipped: {', '.join(shipped_suites())}."
    limits = bounds(field)
    return f"{text} [{limits}]" if limits else text


def cli_model(model: type[RunSuiteParams]) -> type[RunSuiteParams]:
    """``model`` with each field's CLI help attached: same fields, types, bounds and validation.

    cyclopts reads a field's ``Parameter`` from its metadata; the bounds are added to the help
    text here because cyclopts shows a field's description but not its constraints.
    """
    fields: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        is_list = get_origin(field.annotation) is list
        parameter = Parameter(
            help=option_help(name, field),
            # `--models a b` as before; no `--empty-models`, which min_length would refuse anyway.
            consume_multiple=True if is_list else None,
            negative="" if is_list else None,
        )
        if name == "models":
            field = FieldInfo.merge_field_infos(field, default=list(CLI_MODELS))
        fields[name] = (Annotated[field.annotation, parameter], field)
    return create_model(f"{model.__name__}Options", __base__=model, **fields)


if TYPE_CHECKING:
    RunOptions = RunSuiteParams
else:
    RunOptions = cli_model(RunSuiteParams)


@contextmanager
def data_dir_env(data_dir: Path | None) -> Iterator[None]:
    """``PLUMBLINE_DATA_DIR`` set to ``data_dir`` for the run, as if the user had exported it."""
    if data_dir is None:
        yield
        return
    before = os.environ.get(DATA_DIR_ENV)
    os.environ[DATA_DIR_ENV] = str(data_dir)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DATA_DIR_ENV, None)
        else:
            os.environ[DATA_DIR_ENV] = before


@contextmanager
def on_api(target: PrefectTarget, early: EphemeralServer | None) -> Iterator[None]:
    """The run's Prefect API: ``target``'s server, or else a temporary one for this command
    (``early``, started by ``main`` while this module was importing, or one started now). It
    stops when the process exits, after Prefect has sent it the run's last logs."""
    if target.url is not None:
        if early is not None:  # main guessed "no server"; Prefect's settings name one
            early.stop()
        yield
        return
    server = early or EphemeralServer().spawn()
    problem = server.wait_ready()
    if problem is not None:
        raise PlumblineError(f"Prefect's temporary API server {problem}; run with --verbose "
                             "to see its output, or start a server (`prefect server start`)")
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """No flow-run heartbeats for a run in this terminal, unless the user's Prefect settings ask
    for them (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in the environment or the profile).

    Heartbeats tell an automation that a run's process has died; the one Plumbline installs
    (deployments/liveness.py) watches its deployments' runs, which a worker or ``plumbline up``
    executes, not a run started here. Prefect's heartbeat thread sleeps in one-second steps and
    is joined when the flow ends: up to a second added to every ``plumbline run`` for nothing.
    """
    import prefect.context

    context = prefect.context.get_settings_context()
    settings = context.settings
    if "heartbeat_frequency" in settings.flows.model_fields_set:
        yield
        return
    # This one field changed on a copy: ``temporary_settings`` would validate every setting
    # again (~25 ms before the run's first call).
    quiet = settings.model_copy(update={
        "flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    with prefect.context.SettingsContext(profile=context.profile, settings=quiet):
        yield


def run(
    *,
    params: Annotated[RunOptions, Parameter(name="*")] = RunOptions(),
    data_dir: Annotated[
        Path | None,
        Parameter(help="Folder the rows are written to, for this run (default: "
                  "$PLUMBLINE_DATA_DIR, else ./data); unused when PLUMBLINE_STORAGE=b2."),
    ] = None,
    ephemeral: Annotated[
        bool,
        Parameter(negative="", help="Run on a temporary local Prefect API even when a Prefect "
                  "server is configured (PREFECT_API_URL or the active profile)."),
    ] = False,
    verbose: Verbose = False,
) -> int:
    """``plumbline run`` (its help, shown without importing this module, is in flows.cli.app)."""
    # `verbose` is acted on by `main`, before this module imports Prefect: see flows.cli.app.
    resume_gc()
    target = PrefectTarget(None, "--ephemeral") if ephemeral else prefect_target()
    if target.problem is not None:
        raise PlumblineError(
            f"the Prefect server at {target.url} ({target.origin}) is not usable: "
            f"{target.problem}. Start it (`prefect server start`, or `plumbline up`), or run "
            "without it: `plumbline run --ephemeral ...` (then not in that server's UI).")
    print(target.line(), file=sys.stderr, flush=True)
    prefetch("tasks.providers.http_base", "uvloop")  # the calls' HTTP stack, event loop
    with (data_dir_env(data_dir), on_api(target, take_early_server()), without_heartbeats(),
          TerminalProgress()):
        result = run_suite(**params.model_dump())
    resumed = f", {result['resumed_cells']} already done" if result.get("resumed_cells") else ""
    print(f"run {result['run_id']}: {result['rows']} rows ({result.get('written', 0)} new"
          f"{resumed})")
    print_table(result["summary"], SUMMARY_COLUMNS)
    return 0
