"""The suite format: loading, the canonical hash, and validation that locates every problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli.app import main
from tasks.catalog import load_suite
from tasks.errors import SuiteError
from tasks.suites.model import suite_hash
from tests.support.helpers import write_suite

GOOD = {"id": "c-1", "category": "reasoning", "input": "2 + 2 * 2?", "ideal": ["6"],
        "assertion": {"type": "numeric"}, "metadata": {"difficulty": "easy"}}


def problems_of(folder: Path) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(SuiteError) as err:
        load_suite(folder)
    return [(p.line, p.field, p.message) for p in err.value.problems]


def test_loads_text_and_chat_inputs(tmp_path: Path) -> None:
    chat = {"id": "c-2", "input": [{"role": "system", "content": "Be terse."},
                                   {"role": "user", "content": "Capital of France?"}],
            "ideal": "Paris", "assertion": {"type": "contains"}}
    suite = load_suite(write_suite(tmp_path / "s", [GOOD, chat], defaults={"samples": 2}))
    assert [c.id for c in suite.cases] == ["c-1", "c-2"]
    assert suite.defaults.samples == 2
    assert suite.cases[1].messages("ignored: the case has its own")[0]["content"] == "Be terse."
    assert suite.cases[0].messages("Sys")[0] == {"role": "system", "content": "Sys"}


def test_hash_is_canonical(tmp_path: Path) -> None:
    other = {**GOOD, "id": "c-0", "ideal": ["4"]}
    a = load_suite(write_suite(tmp_path / "a", [GOOD, other]))
    # Same cases: different line order, key order and spacing in the file.
    lines = [json.dumps(dict(reversed(list(other.items()))), indent=None),
             json.dumps(GOOD, separators=(",", ":"))]
    b = load_suite(write_suite(tmp_path / "b", lines))
    assert a.hash == b.hash
    assert a.hash.startswith("sha256:") and len(a.hash) == 7 + 64
    changed = load_suite(write_suite(tmp_path / "c", [GOOD, {**other, "ideal": ["5"]}]))
    assert changed.hash != a.hash
    assert suite_hash(list(a.cases)) == a.hash


def test_every_problem_is_named_with_line_and_field(tmp_path: Path) -> None:
    lines = [
        json.dumps(GOOD),                                                               # 1
        json.dumps(GOOD),                                                               # 2 dup
        json.dumps({**GOOD, "id": "c-3", "assertion": {"type": "contains_sorta"}}),     # 3
        json.dumps({**GOOD, "id": "c-4", "ideal": None, "assertion": {"type": "contains"}}),
        '{"id": "c-5", "input": "x", ',                                                 # 5
        json.dumps({**GOOD, "id": "c-6",
                    "assertion": {"type": "contains", "case_sensitive": "yes"}}),       # 6
        json.dumps({**GOOD, "id": "c-7", "assertion": {"type": "regex", "pattern": "("}}),
        json.dumps({**GOOD, "id": "c-8", "ideal": ["six"]}),                            # 8
        "",
        json.dumps({**GOOD, "id": "c-10", "input": ""}),                                # 10
        json.dumps({**GOOD, "id": "c-11", "assertion": {"type": "code_executes",
                                                        "tests": "assert ("}}),         # 11
        json.dumps({**GOOD, "id": "c-12", "extra": 1}),                                 # 12
    ]
    found = problems_of(write_suite(tmp_path / "bad", lines))
    where = {(line, field) for line, field, _ in found}
    assert where == {
        (2, "id"), (3, "assertion.type"), (4, "ideal"), (5, None),
        (6, "assertion.case_sensitive"), (7, "assertion.pattern"), (8, "ideal[0]"),
        (10, "input"), (11, "assertion.tests"), (12, "extra"),
    }
    messages = {line: message for line, _, message in found}
    assert "first on line 1" in messages[2]
    assert "contains_sorta" in messages[3] and "known:" in messages[3]
    assert "invalid JSON" in messages[5]


def test_error_message_reads_file_line_field(tmp_path: Path) -> None:
    folder = write_suite(tmp_path / "bad", [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(SuiteError) as err:
        load_suite(folder)
    assert f"{folder / 'cases.jsonl'}:2: [id] duplicate id 'c-1'" in str(err.value)


def test_suite_toml_problems_carry_their_line(tmp_path: Path) -> None:
    folder = write_suite(tmp_path / "s", [GOOD], sampels=3, defaults={"samples": 0, "seed": "x"})
    found = problems_of(folder)
    text = (folder / "suite.toml").read_text().splitlines()
    for line, field, _ in found:
        assert line is not None, field
        key = field.rpartition(".")[2]
        assert text[line - 1].startswith(key), (field, text[line - 1])
    assert {f for _, f, _ in found} == {"sampels", "defaults.samples", "defaults.seed"}


def test_invalid_toml_and_missing_name(tmp_path: Path) -> None:
    folder = write_suite(tmp_path / "s", [GOOD])
    (folder / "suite.toml").write_text('version = "1"\nname = \n')
    found = problems_of(folder)
    assert found[0][0] == 2 and "invalid TOML" in found[0][2]
    (folder / "suite.toml").write_text('version = "1"\n')
    assert (None, "name", "required") in problems_of(folder)


def test_byte_order_mark_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    folder = write_suite(tmp_path / "s", [GOOD])
    (folder / "cases.jsonl").write_text("\ufeff" + json.dumps(GOOD) + "\n\n\n", encoding="utf-8")
    assert len(load_suite(folder).cases) == 1


def test_empty_and_missing_case_files(tmp_path: Path) -> None:
    folder = write_suite(tmp_path / "s", [])
    (folder / "cases.jsonl").write_text("")
    assert problems_of(folder)[0][2] == "suite has no cases"
    (folder / "cases.jsonl").unlink()
    assert problems_of(folder)[0][2] == "file not found"


def test_unknown_suite_name_lists_the_known_ones() -> None:
    with pytest.raises(SuiteError, match=r"known suites: .*cheap"):
        load_suite("no-such-suite")


def test_cli_validate_reports_problems_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_suite(tmp_path / "bad", [json.dumps(GOOD), json.dumps(GOOD)])
    assert main(["suites", "validate", str(bad), "cheap"]) == 1
    out, err = capsys.readouterr()
    assert "INVALID, 1 problem" in err
    assert f"{bad / 'cases.jsonl'}:2: [id]" in err
    assert "cheap: ok: cheap 1.0.0, 10 cases, sha256:" in out
    assert "1 valid, 1 invalid" in out


def test_cli_list_shows_every_shipped_suite(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suites", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert rows["cheap"][2] == "10"
    assert rows["moderate"][2] == "25"
    assert rows["comprehensive"][2] == "75"
    assert rows["comprehensive"][3] == "6"  # categories
    assert "drift-canary" in rows and "smoke" in rows


def test_a_folder_that_is_not_a_suite(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"neither suite\.toml nor a Pramana manifest\.toml"):
        load_suite(tmp_path)
