"""The ``plumbline`` command: one cyclopts App over the command modules beside this one (one per
command group), its error handling and the check that Plumbline's own packages are the ones found.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

from cyclopts import App, CycloptsError
from rich.console import Console
from rich.text import Text

from flows.cli.common import FastExit, pause_gc, quiet_prefect, start_early, stop_servers
from flows.cli.demo import demo
from flows.cli.export import export
from flows.cli.models import models
from flows.cli.nightly import nightly
from flows.cli.serve import api, serve, up
from flows.cli.submit import submit
from flows.cli.suites import app as suites_app

# Packages the wheel installs at the top of site-packages under common names; each carries this
# marker so that another distribution's package of the same name is recognised.
OWN_PACKAGES = ("tasks", "api")
MARKER = "__plumbline__"
# Where Plumbline's packages sit: beside flows/, which holds this file.
ROOT = Path(__file__).resolve().parents[2]
VERBOSE_FLAGS = frozenset({"--verbose", "-v"})

app = App(
    name="plumbline",
    help="Scheduled LLM evaluation that notices when the model behind a name changes.",
    version=lambda: f"plumbline {importlib.import_module('tasks').__version__}",
    version_flags=["--version"],
    help_flags=["--help", "-h"],
    result_action="return_value",
    # main() turns Ctrl-C into exit status 130 itself, after the command's own cleanup.
    suppress_keyboard_interrupt=False,
    # An error is one line per problem, unwrapped, whatever the terminal's width.
    error_console=Console(stderr=True, soft_wrap=True, highlight=False),
)
# In the order a newcomer meets them. `run` is loaded only when invoked (its options are made from
# the flow's parameter model, whose module imports Prefect: seconds), so its help is written here;
# the other commands' modules import nothing heavy until a command runs.
app.command(demo, sort_key=0)
app.command(
    "flows.cli.run:run", name="run", sort_key=1,
    help="Run a suite against models now (the run-suite flow).\n\nRun a suite against one or "
    "more models with the run-suite flow, with a progress bar, and print the per-model summary. "
    "The options are the run-suite flow's parameters, the fields of the Prefect UI's form, "
    "with the same bounds and descriptions. The run goes to the Prefect server that "
    "PREFECT_API_URL or the active Prefect profile names (it must answer), else to a temporary "
    "Prefect API started for this command; the first line says which.",
)
app.command(nightly, sort_key=2)
app.command(serve, sort_key=3)
app.command(up, sort_key=4)
app.command(api, sort_key=5)
app.command(submit, sort_key=6)
suites_app.sort_key = 7
app.command(suites_app)
app.command(models, sort_key=8)
app.command(export, sort_key=9)


def foreign_package() -> str | None:
    """Why Plumbline cannot run in this environment, or None when its own packages are found.

    The wheel installs ``tasks`` and ``api`` as top-level packages; another distribution's
    package of the same name, earlier on the path or installed over ours, would be imported in
    their place and fail far from the cause. Each package's ``__init__`` is read, not imported:
    importing ``api`` costs seconds (FastAPI), and a foreign package's import could do anything.
    """
    for name in OWN_PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        source = _source(spec) if spec is not None else None
        if source is not None and f"{MARKER} = True" in source:
            continue
        if spec is None:
            where = "is not installed"
        else:
            found = origin or ", ".join(spec.submodule_search_locations or ()) or "?"
            where = f"found at {found} is not Plumbline's"
        return (
            f"plumbline: the Python package '{name}' {where}: another installed distribution "
            f"(or a folder on PYTHONPATH) provides a package with the same name, and Python "
            f"imports it instead of Plumbline's (expected in {ROOT}). Plumbline installs "
            f"top-level packages named flows, tasks, api, suites and deployments, so Plumbline "
            f"wants its own virtual environment: create one (python3 -m venv .venv) and install "
            f"Plumbline alone into it."
        )
    return None


def _source(spec: ModuleSpec) -> str | None:
    get_source = getattr(spec.loader, "get_source", None)
    if get_source is None:
        return None
    try:
        return get_source(spec.name)
    except (ImportError, OSError):
        return None


def format_error(error: CycloptsError) -> Text:
    """A command-line mistake as one plain line per problem, naming the option to fix."""
    cause = error.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):  # a pydantic ValidationError: a value outside a field's bounds
        lines = []
        for problem in errors():
            loc = [str(part) for part in problem.get("loc", ())]
            option = "--" + loc[0].replace("_", "-") if loc else "value"
            value = problem.get("input")
            shown = f"{option} {value}" if isinstance(value, str) else option
            lines.append(f"plumbline: error: {shown}: {problem['msg']}")
        text = "\n".join(lines)
    else:
        text = f"plumbline: error: {error}"
    command = " ".join(["plumbline", *(error.command_chain or ())])
    return Text(f"{text}\n(see `{command} --help`)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``plumbline`` command line and return its exit status: 0, 1 when a command found
    problems (invalid suites, failed submissions), 2 for a usage or configuration error, 130 on
    Ctrl-C."""
    problem = foreign_package()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    tokens = list(sys.argv[1:] if argv is None else argv)
    exiting = None
    if tokens[:1] == ["run"]:
        # `run` builds its options from the flow's parameter model, so loading that command
        # imports Prefect, which reads its logging level once, at import: set it first.
        quiet_prefect(verbose=not VERBOSE_FLAGS.isdisjoint(tokens))
        # The whole process is the command (not a test calling main): skip the interpreter's
        # teardown once every exit handler has run (flows.cli.common.FastExit). Armed first,
        # so that its handler runs last.
        exiting = FastExit().arm() if argv is None else None
        if exiting is not None:
            pause_gc()  # until the command starts (flows.cli.run.run calls resume_gc)
        # With no Prefect server named, the run needs Prefect's temporary one: start it now,
        # so its start-up overlaps the imports below (flows.cli.common.start_early).
        start_early(tokens)
    status = dispatch(tokens)
    if exiting is not None:
        exiting.status = status
    elif tokens[:1] == ["run"]:
        # Called in a process that goes on (a test, a script): its temporary API server stops
        # now, not when that process ends. (A whole `plumbline run` process stops it at exit,
        # after Prefect has sent it the run's last logs.)
        stop_servers()
    return status


def dispatch(tokens: list[str]) -> int:
    """Run the command ``tokens`` name; its exit status (see ``main``)."""
    # Only once the guard has passed: this `tasks` is known to be Plumbline's.
    from tasks.errors import PlumblineError

    try:
        result: Any = app(tokens, error_formatter=format_error, exit_on_error=False)
    except CycloptsError:  # already printed by format_error
        return 2
    except PlumblineError as exc:
        print(f"plumbline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0

if __name__ == "__main__":
    sys.exit(main())
