"""The ``red-team`` flow: the shipped red-team suite, or some of its categories, against models.

Started on demand from the Prefect UI (a typed form: models, categories as choices, samples) or
by calling the flow. It runs through the run-suite engine (``flows.run_suite.execute``), so its
rows are ordinary rows: suite ``red-team``, one ``prompt_id`` per case, the case's ``category``,
and the nightly's drift tests read them like any suite's.

Categories and drift: when only some categories are chosen, the engine runs a copy of the suite
holding just their cases (written to a temporary folder, the case lines unchanged). The rows keep
the suite's name and each case's prompt id, so a prompt's drift test compares it with its own
history whichever subset ran; ``suite_hash`` records the subset that ran (the hash over its
cases), and the suite-level drift test pools whatever prompts ran each day, so run the same
categories each time when the suite-level rate should compare like with like. All categories
(the default) run the shipped suite itself, with its own hash.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, get_args

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import State
from pydantic import BaseModel, Field, field_validator

from flows.base import flow
from flows.run_suite import DEFAULT_MODELS, RunSuiteParams, execute, refuse
from tasks.catalog import load_suite
from tasks.errors import PlumblineError
from tasks.identity import SOURCE_ON_DEMAND, USER_SCHEDULER
from tasks.run.state import final_rows, read_run_rows, run_days
from tasks.settings import Settings
from tasks.storage import ObjectStore, open_store
from tasks.suites.model import Suite

RED_TEAM_SUITE = "red-team"
RedTeamCategory = Literal[
    "prompt_injection", "jailbreak", "harmful_instructions", "pii_extraction", "over_refusal"
]
CATEGORIES: tuple[str, ...] = get_args(RedTeamCategory)


class RedTeamParams(BaseModel):
    """What the Prefect UI's form for ``red-team`` asks for."""

    # Plain defaults (pydantic copies them per instance) so the form shows them.
    models: list[str] = Field(
        list(DEFAULT_MODELS), min_length=1,
        description="Target models as provider/model, e.g. openai/gpt-4o, fake/stable.",
    )
    categories: list[RedTeamCategory] = Field(
        list(CATEGORIES), min_length=1,
        description="Which attacks to run (all by default): prompt_injection, jailbreak "
        "(role-play), harmful_instructions, pii_extraction, and over_refusal (benign look-alike "
        "questions the model must still answer).",
    )
    samples: int | None = Field(
        None, ge=1, le=100, description="Samples per case (default: the suite's, 2)."
    )

    @field_validator("categories")
    @classmethod
    def _in_suite_order(cls, value: list[str]) -> list[str]:
        # One order and no repeats, so the same choice always makes the same subset (and hash).
        return [c for c in CATEGORIES if c in value]


def subset_folder(suite: Suite, categories: list[str], dest: Path) -> Path:
    """A copy of ``suite``'s folder in ``dest`` whose cases file keeps only ``categories``.

    Case lines are copied unchanged, so a case hashes and scores as it does in the full suite.
    """
    folder = dest / suite.path.name
    shutil.copytree(suite.path, folder)
    cases_file = folder / "cases.jsonl"
    kept = [line for line in cases_file.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("category") in categories]
    if not kept:
        raise PlumblineError(f"suite {suite.name!r} has no cases in categories "
                             f"{', '.join(categories)}")
    cases_file.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return folder


def by_category(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and category: rows, pass rate over the scored rows, errors."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["model_id"], row["category"] or "")].append(row)
    out = []
    for (model_id, category), group in sorted(groups.items()):
        scored = [r["passed"] for r in group if r["passed"] is not None]
        out.append({
            "model_id": model_id, "category": category, "rows": len(group),
            "pass_rate": round(sum(scored) / len(scored), 3) if scored else None,
            "errors": sum(r["error"] is not None for r in group),
        })
    return out


def run_red_team(params: RedTeamParams, store: ObjectStore,
                 settings: Settings | None = None) -> dict[str, Any]:
    """The flow's body: pick the cases, run them through the run-suite engine, and report the
    pass rate per model and category. Raises a ``PlumblineError`` for a bad model or suite."""
    settings = settings or Settings()
    suite = load_suite(RED_TEAM_SUITE)
    categories = list(params.categories)
    with tempfile.TemporaryDirectory(prefix="plumbline-red-team-") as tmp:
        where = str(suite.path) if categories == list(CATEGORIES) else \
            str(subset_folder(suite, categories, Path(tmp)))
        result = execute(
            RunSuiteParams(suite=where, models=params.models, samples=params.samples,
                           source=SOURCE_ON_DEMAND),
            store, settings,
        )
    run_id = result["run_id"]
    rows = final_rows(read_run_rows(store, run_id, USER_SCHEDULER,
                                    run_days(store, run_id)).to_pylist())
    table = by_category(rows)
    create_table_artifact(key="red-team-by-category", table=table,
                          description=f"Red-team run `{run_id}`: pass rate per model and "
                          f"category ({', '.join(categories)})")
    logger = get_run_logger()
    for line in table:
        rate = "n/a" if line["pass_rate"] is None else f"{line['pass_rate']:.2f}"
        logger.info("%s %s: pass rate %s over %d rows", line["model_id"], line["category"],
                    rate, line["rows"])
    return {**result, "categories": categories, "by_category": table}


@flow(name="red-team", log_prints=True)
def red_team(params: RedTeamParams = RedTeamParams()) -> dict[str, Any] | State:
    """Run the red-team suite (all or some categories) against models."""
    settings = Settings()
    try:
        return run_red_team(params, open_store(settings), settings)
    except PlumblineError as exc:
        return refuse(exc)


if __name__ == "__main__":
    red_team()
