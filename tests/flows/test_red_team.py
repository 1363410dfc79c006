"""The red-team flow on the offline fake models: all categories or some, rows that are ordinary
run rows, a bad category refused before anything runs, and a form that offers the categories."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError

from deployments.serve import build_deployments
from flows.red_team import CATEGORIES, RedTeamParams, red_team
from tasks.catalog import load_suite
from tasks.suites.model import suite_hash

pytestmark = pytest.mark.prefect


def stored_rows(data_dir: Path) -> list[dict[str, object]]:
    files = sorted((data_dir / "raw").rglob("*.parquet"))
    assert files, "the run wrote no rows"
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_all_categories_run_the_shipped_suite(prefect_harness: None, data_dir: Path) -> None:
    result = red_team(RedTeamParams(models=["fake/stable"], samples=1))
    suite = load_suite("red-team")
    assert result["suite"] == "red-team" and result["categories"] == list(CATEGORIES)
    assert result["rows"] == len(suite.cases)
    by_cat = {line["category"]: line for line in result["by_category"]}
    assert set(by_cat) == set(CATEGORIES)
    assert by_cat["over_refusal"]["pass_rate"] == 1.0  # the stable fake answers the controls
    assert 0.8 <= by_cat["harmful_instructions"]["pass_rate"] < 1.0
    rows = stored_rows(data_dir)
    assert {r["suite"] for r in rows} == {"red-team"}
    assert {r["suite_hash"] for r in rows} == {suite.hash}
    assert {r["prompt_id"] for r in rows} == {c.id for c in suite.cases}


def test_chosen_categories_only_and_rows_keep_the_suite_name(
    prefect_harness: None, data_dir: Path
) -> None:
    # Given out of order and with a repeat: the same choice always makes the same subset.
    params = RedTeamParams(models=["fake/stable", "fake/drifting@2026-01-01"], samples=1,
                           categories=["over_refusal", "prompt_injection", "over_refusal"])
    assert params.categories == ["prompt_injection", "over_refusal"]
    result = red_team(params)
    suite = load_suite("red-team")
    chosen = [c for c in suite.cases if c.category in params.categories]
    assert result["rows"] == 2 * len(chosen)
    rows = stored_rows(data_dir)
    assert {r["category"] for r in rows} == {"prompt_injection", "over_refusal"}
    assert {r["suite"] for r in rows} == {"red-team"}
    assert {r["suite_hash"] for r in rows} == {suite_hash(chosen)}  # the subset that ran
    by_cat = {(line["model_id"], line["category"]): line["pass_rate"]
              for line in result["by_category"]}
    # The drifted fake over-refuses the benign look-alikes; the stable one answers them.
    assert by_cat[("fake/stable", "over_refusal")] == 1.0
    assert by_cat[("fake/drifting@2026-01-01", "over_refusal")] <= 0.5


def test_a_bad_category_is_refused_before_anything_runs(
    prefect_harness: None, data_dir: Path
) -> None:
    with pytest.raises(ValidationError) as err:
        RedTeamParams(categories=["weapons"])
    text = str(err.value)
    assert "categories.0" in text and "'prompt_injection'" in text and "'over_refusal'" in text
    with pytest.raises(ParameterTypeError, match="categories"):
        red_team(params={"models": ["fake/stable"], "categories": ["weapons"]})
    with pytest.raises(ValidationError):
        RedTeamParams(categories=[])
    assert not (data_dir / "raw").exists()


def test_a_bad_model_fails_the_run_with_its_message(prefect_harness: None, data_dir: Path) -> None:
    state = red_team(RedTeamParams(models=["fake/nonexistent"]), return_state=True)
    assert state.is_failed()
    assert "unknown fake model 'fake/nonexistent'" in str(state.message)


def test_the_form_offers_the_categories_as_choices() -> None:
    deployment = {d.name: d for d in build_deployments()}["red-team"]
    schema = deployment._parameter_openapi_schema.model_dump()
    fields = schema["definitions"]["RedTeamParams"]["properties"]
    categories = fields["categories"]
    assert categories["type"] == "array"
    assert categories["items"]["enum"] == list(CATEGORIES)
    assert categories["default"] == list(CATEGORIES)
    assert fields["models"]["default"] == ["fake/stable", "fake/drifting"]
    assert all(f.get("description") for f in fields.values())
    json.dumps(schema)  # what the UI receives is plain JSON
