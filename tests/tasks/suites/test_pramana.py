"""A Pramana suite directory loads unchanged: manifest.toml with [tiers.*] naming JSONL files.

The fixture below is written in Pramana's shape (its manifest keys, its case lines with
``tokens_est`` metadata and ``judge_prompt`` judges), with content of our own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.catalog import load_suite
from tasks.errors import SuiteError
from tasks.suites.load import list_suites

MANIFEST = """[suite]
version = "v1.0"
created = "2026-02-10"
description = "Fixture in the shape of a Pramana suite directory"

[tiers.cheap]
file = "cheap.jsonl"
test_count = 3
estimated_cost_usd = 0.01
estimated_tokens = 120
description = "Basic coverage"

[tiers.moderate]
file = "moderate.jsonl"
test_count = 2
estimated_cost_usd = 0.02
estimated_tokens = 200
description = "More coverage"

[metadata]
categories = ["reasoning", "factual", "instruction_following", "creative"]
assertion_types = ["contains", "contains_any", "is_json", "llm_judge"]
"""

CHEAP = [
    {"id": "cheap-001", "category": "reasoning", "input": "Compute 9 - 3 * 2", "ideal": ["3"],
     "assertion": {"type": "contains", "case_sensitive": False},
     "metadata": {"difficulty": "easy", "tokens_est": 20, "tags": ["math"]}},
    {"id": "cheap-002", "category": "factual", "input": "Which ocean is the largest?",
     "ideal": ["Pacific"], "assertion": {"type": "contains_any", "case_sensitive": False},
     "metadata": {"difficulty": "easy", "tokens_est": 15, "tags": ["geography"]}},
    {"id": "cheap-003", "category": "instruction_following",
     "input": "Reply with a JSON object with a key 'ready' set to true. Only the JSON.",
     "ideal": None, "assertion": {"type": "is_json"},
     "metadata": {"difficulty": "easy", "tokens_est": 30, "tags": ["json"]}},
]
MODERATE = [
    {"id": "moderate-001", "category": "creative", "input": "Write a haiku about snow.",
     "ideal": None, "assertion": {"type": "llm_judge",
                                  "judge_prompt": "Is this a haiku with 5-7-5 syllables?"},
     "metadata": {"difficulty": "medium", "tokens_est": 40, "tags": ["poetry"]}},
    {"id": "moderate-002", "category": "instruction_following",
     "input": "Output the numbers 1 through 3, one per line, nothing else.",
     "ideal": "1\n2\n3", "assertion": {"type": "contains", "case_sensitive": False},
     "metadata": {"difficulty": "easy", "tokens_est": 20, "tags": ["format"]}},
]


def pramana_dir(root: Path, manifest: str = MANIFEST) -> Path:
    folder = root / "v1.0"
    folder.mkdir(parents=True)
    (folder / "manifest.toml").write_text(manifest)
    for name, rows in (("cheap", CHEAP), ("moderate", MODERATE)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_all_tiers_load_unchanged(tmp_path: Path) -> None:
    suite = load_suite(pramana_dir(tmp_path))
    assert suite.version == "v1.0"
    assert [c.id for c in suite.cases] == [*(c["id"] for c in CHEAP),
                                           *(c["id"] for c in MODERATE)]
    assert suite.cases[0].metadata["tokens_est"] == 20
    assert suite.cases[3].assertion["judge_prompt"].startswith("Is this a haiku")


def test_one_tier_by_keyword_or_colon(tmp_path: Path) -> None:
    folder = pramana_dir(tmp_path)
    cheap = load_suite(folder, tier="cheap")
    assert cheap.name == "v1.0:cheap" and cheap.tier == "cheap"
    assert len(cheap.cases) == 3
    assert cheap.description == "Basic coverage"
    assert load_suite(f"{folder}:moderate").hash == load_suite(folder, tier="moderate").hash
    assert cheap.hash != load_suite(folder).hash


def test_unknown_tier(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no tier 'premium'"):
        load_suite(pramana_dir(tmp_path), tier="premium")


def test_found_by_name_in_an_extra_folder(tmp_path: Path) -> None:
    pramana_dir(tmp_path)
    assert tmp_path / "v1.0" in list_suites([tmp_path])
    assert len(load_suite("v1.0", [tmp_path]).cases) == 5


def test_test_count_mismatch_points_at_the_manifest_line(tmp_path: Path) -> None:
    folder = pramana_dir(tmp_path, MANIFEST.replace("test_count = 2", "test_count = 4"))
    with pytest.raises(SuiteError) as err:
        load_suite(folder)
    (problem,) = err.value.problems
    assert problem.file.endswith("manifest.toml")
    assert problem.field == "tiers.moderate.test_count"
    assert MANIFEST.splitlines()[problem.line - 1] == "test_count = 2"
    assert "says 4 cases but moderate.jsonl has 2" in problem.message


def test_a_bad_case_line_in_a_tier_is_located(tmp_path: Path) -> None:
    folder = pramana_dir(tmp_path)
    rows = (folder / "moderate.jsonl").read_text().splitlines()
    rows[1] = rows[1].replace('"contains"', '"contains_maybe"')
    (folder / "moderate.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(SuiteError) as err:
        load_suite(folder)
    assert f"{folder / 'moderate.jsonl'}:2: [assertion.type]" in str(err.value)


def test_same_id_in_two_tiers(tmp_path: Path) -> None:
    folder = pramana_dir(tmp_path)
    # The same case repeated in a larger tier is one case...
    with (folder / "moderate.jsonl").open("a") as fh:
        fh.write(json.dumps(CHEAP[0]) + "\n")
    (folder / "manifest.toml").write_text(MANIFEST.replace("test_count = 2", "test_count = 3"))
    assert len(load_suite(folder).cases) == 5
    # ...but two different cases under one id are refused.
    with (folder / "moderate.jsonl").open("a") as fh:
        fh.write(json.dumps({**CHEAP[1], "ideal": ["Atlantic"]}) + "\n")
    (folder / "manifest.toml").write_text(MANIFEST.replace("test_count = 2", "test_count = 4"))
    with pytest.raises(SuiteError, match="'cheap-002' is also in tier 'cheap'"):
        load_suite(folder)


def test_manifest_without_tiers(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "manifest.toml").write_text('[suite]\nversion = "v1"\n')
    with pytest.raises(SuiteError, match=r"no \[tiers.<name>\] entries"):
        load_suite(folder)


def test_cli_validates_a_pramana_tier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli.app import main

    folder = pramana_dir(tmp_path)
    assert main(["suites", "validate", f"{folder}:cheap"]) == 0
    out = capsys.readouterr().out
    assert "ok: v1.0:cheap v1.0, 3 cases" in out
    assert "assertions: contains 1, contains_any 1, is_json 1" in out
