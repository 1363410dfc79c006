"""``plumbline export``: files a user can open, the same tables as the API, clear refusals."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from flows.cli.app import main
from tasks.storage.local import LocalStore
from tasks.summaries.export import export_from_store
from tests.support.demo import publish_demo_night

TODAY = date(2026, 11, 30)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-export") / "data"
    publish_demo_night(LocalStore(root), TODAY)
    return root


def test_history_to_a_parquet_file(data_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drifting.parquet"
    assert main(["export", "history", "--model", "fake/drifting", "-o", str(out),
                 "--data-dir", str(data_dir)]) == 0
    frame = pl.read_parquet(out)
    assert len(frame) == 35 and set(frame["model_id"]) == {"fake/drifting"}
    assert frame.schema["date"] == pl.Date
    assert "exported 35 row(s) of history" in capsys.readouterr().err


def test_csv_on_stdout_matches_the_json_export(data_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "models", "--data-dir", str(data_dir)]) == 0
    csv_text = capsys.readouterr().out
    rows = json.loads(export_from_store(LocalStore(data_dir), "models", "json").body)
    frame = pl.read_csv(csv_text.encode())
    assert frame["model_id"].to_list() == [r["model_id"] for r in rows]
    assert frame["verdict"].to_list() == [r["verdict"] for r in rows]


def test_format_follows_the_output_suffix(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "drift.json"
    assert main(["export", "drift", "-o", str(out), "--data-dir", str(data_dir)]) == 0
    tests = json.loads(out.read_text())
    assert tests and {"model_id", "metric", "p_value", "significant"} <= set(tests[0])


@pytest.mark.parametrize(("argv", "needle"), [
    (["export", "history"], "needs a model id"),
    (["export", "rows"], "needs --user"),
    (["export", "rows", "--user", "../etc"], "invalid user_id"),
    (["export", "models", "--model", "fake/stable"], "history export only"),
    (["export", "history", "--model", "fake/none"], "no published history"),
])
def test_mistakes_are_one_clear_line(data_dir: Path, argv: list[str], needle: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--data-dir", str(data_dir)]) == 2
    assert needle in capsys.readouterr().err


def test_nothing_published_says_to_run_the_nightly(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "drift", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "plumbline nightly" in capsys.readouterr().err


def test_a_users_raw_rows(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine.parquet"
    assert main(["export", "rows", "--user", "scheduler", "-o", str(out),
                 "--data-dir", str(data_dir)]) == 0
    frame = pl.read_parquet(out)
    # The demo's scheduled runs: 35 days x 2 models x the smoke suite x 3 samples.
    assert len(frame) > 0 and set(frame["user_id"]) == {"scheduler"}
    assert frame["id"].n_unique() == len(frame)
