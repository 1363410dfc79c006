"""The ``plumbline`` command: one cyclopts App over the command modules beside this one (one per
command group) and its error handling."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from cyclopts import App, CycloptsError
from rich.console import Console
from rich.text import Text

from flows.cli.common import quiet_prefect
from flows.cli.demo import demo
from flows.cli.models import models
from flows.cli.nightly import nightly
from flows.cli.serve import api, serve, up
from flows.cli.submit import submit
from flows.cli.suites import app as suites_app

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
    "with the same bounds and descriptions.",
)
app.command(nightly, sort_key=2)
app.command(serve, sort_key=3)
app.command(up, sort_key=4)
app.command(api, sort_key=5)
app.command(submit, sort_key=6)
suites_app.sort_key = 7
app.command(suites_app)
app.command(models, sort_key=8)


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
    tokens = list(sys.argv[1:] if argv is None else argv)
    if tokens[:1] == ["run"]:
        # `run` builds its options from the flow's parameter model, so loading that command
        # imports Prefect, which reads its logging level once, at import: set it first.
        quiet_prefect(verbose=not VERBOSE_FLAGS.isdisjoint(tokens))
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
