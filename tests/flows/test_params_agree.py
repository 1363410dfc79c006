"""The three faces of a run's parameters agree: the fields of ``RunSuiteParams`` (what the engine
takes), the ``run-suite`` flow's parameter schema (the Prefect UI's form, top-level fields) and
the options of ``plumbline run``: the same names, types, bounds, defaults and descriptions.

A field added to ``RunSuiteParams`` and not to the flow's signature or the CLI fails here, with a
message naming the field and where it is missing.
"""

from __future__ import annotations

from typing import Any

from prefect.utilities.callables import parameter_schema
from pydantic import BaseModel, Field

from flows.cli.run import RunOptions, bounds
from flows.run_suite import RunSuiteParams, run_suite
from tests.flows.cli.test_run import option
from tests.flows.cli.test_run import run_help as cli_help_lines

# Options of `plumbline run` that are not run-suite parameters: where this terminal's run goes.
CLI_ONLY = {"--data-dir", "--ephemeral", "--verbose", "--help"}
# JSON-schema keywords that bound a value; compared between the model, the form and the CLI.
BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems",
              "maxItems", "minLength", "maxLength", "enum", "format")


def constraints(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every type and bound in a property's JSON schema, ``anyOf`` branches included, in order."""
    found = [(k, schema[k]) for k in ("type", *BOUND_KEYS) if k in schema]
    for branch in schema.get("anyOf", []):
        found.extend(constraints(branch))
    items = schema.get("items")
    if isinstance(items, dict):
        found.extend(("items", c) for c in constraints(items))
    return found


# Set only by a parent run on the child runs it spreads over (flows/spread.py): a form field, as
# every flow parameter must be, but never an option a person types.
PARENT_ONLY = {"part"}


def disagreements(model: type[BaseModel], form: dict[str, Any], cli: dict[str, str],
                  cli_model: type[BaseModel]) -> list[str]:
    """What differs between ``model``'s fields, the flow's ``form`` (its parameter schema) and
    the CLI (``cli``: option -> help line; ``cli_model``: the model its options validate with)."""
    problems = []
    fields = model.model_fields
    own = model.model_json_schema()["properties"]
    props = form["properties"]
    cli_props = cli_model.model_json_schema()["properties"]
    for name in fields.keys() - props.keys():
        problems.append(f"RunSuiteParams.{name} is not a parameter of the run-suite flow (the "
                        f"Prefect UI's form): add `{name}` to run_suite's signature")
    for name in props.keys() - fields.keys():
        problems.append(f"the run-suite flow's parameter `{name}` is not a field of "
                        "RunSuiteParams")
    for name in PARENT_ONLY & {o[2:].replace("-", "_") for o in cli}:
        problems.append(f"{option(name)} is set by a parent run only: hide it from `plumbline run`")
    for name in fields.keys() - PARENT_ONLY - {o[2:].replace("-", "_") for o in cli}:
        problems.append(f"RunSuiteParams.{name} has no option {option(name)} in `plumbline run`")
    for opt in cli.keys() - CLI_ONLY - {option(n) for n in fields}:
        problems.append(f"`plumbline run` option {opt} is neither a RunSuiteParams field nor "
                        "one of the CLI's own options")
    for name in fields.keys() & props.keys():
        if constraints(own[name]) != constraints(props[name]):
            problems.append(f"{name}: the form's type/bounds {constraints(props[name])} differ "
                            f"from RunSuiteParams' {constraints(own[name])}")
        if own[name].get("description") != props[name].get("description"):
            problems.append(f"{name}: the form's description differs from RunSuiteParams'")
        if own[name].get("default") != props[name].get("default"):
            problems.append(f"{name}: the form's default {props[name].get('default')!r} differs "
                            f"from RunSuiteParams' {own[name].get('default')!r}")
    for name in fields.keys() & {o[2:].replace("-", "_") for o in cli}:
        line = cli[option(name)]
        if name not in cli_props or constraints(cli_props[name]) != constraints(own[name]):
            problems.append(f"{name}: the CLI validates other bounds than RunSuiteParams")
        shown = bounds(fields[name])
        if shown and shown not in line:
            problems.append(f"{option(name)}: the help does not show the bounds {shown}")
        description = " ".join((fields[name].description or "").split())
        if description not in line:
            problems.append(f"{option(name)}: the help does not show the field's description")
    return problems


def test_the_model_the_form_and_the_cli_agree() -> None:
    form = parameter_schema(run_suite).model_dump_for_openapi()
    assert disagreements(RunSuiteParams, form, cli_help_lines(), RunOptions) == []
    # Not vacuous: the comparison saw every field, with bounds and descriptions.
    assert len(form["properties"]) == len(RunSuiteParams.model_fields) >= 15
    assert ("maximum", 100) in constraints(form["properties"]["samples"])
    assert all(p.get("description") for p in form["properties"].values())


def test_a_field_added_to_the_model_alone_is_named_as_missing() -> None:
    class WithBudget(RunSuiteParams):
        budget_usd: float | None = Field(None, gt=0, description="Stop after spending this.")

    form = parameter_schema(run_suite).model_dump_for_openapi()
    problems = disagreements(WithBudget, form, cli_help_lines(), RunOptions)
    assert problems == [
        "RunSuiteParams.budget_usd is not a parameter of the run-suite flow (the Prefect UI's "
        "form): add `budget_usd` to run_suite's signature",
        "RunSuiteParams.budget_usd has no option --budget-usd in `plumbline run`",
    ]


def test_a_bound_changed_on_one_side_is_named() -> None:
    form = parameter_schema(run_suite).model_dump_for_openapi()
    form["properties"]["concurrency"]["anyOf"][0]["maximum"] = 2048
    (problem,) = disagreements(RunSuiteParams, form, cli_help_lines(), RunOptions)
    assert problem.startswith("concurrency: the form's type/bounds")
