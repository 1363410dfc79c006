"""Export tables, and the raw-data queries docs/storage.md shows (run here as written)."""

from __future__ import annotations

import contextlib
import io
import re
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tasks.storage.local import LocalStore
from tasks.summaries.export import export_summary, flatten, frame_of
from tests.support.demo import build_demo_history

ROOT = Path(__file__).resolve().parents[3]


def test_flatten_dots_nested_objects_and_spells_lists_as_json() -> None:
    row = flatten({"model_id": "a/b", "community": {"verdict": "watch", "n": {"x": 1}},
                   "reasons": ["slower", "shorter"], "empty": []})
    assert row == {"model_id": "a/b", "community.verdict": "watch", "community.n.x": 1,
                   "reasons": '["slower","shorter"]', "empty": "[]"}


def test_frame_types_come_from_the_values() -> None:
    frame = frame_of([{"date": "2026-11-30", "rate": 1, "note": None},
                      {"date": "2026-12-01", "rate": 0.5, "extra": "only here"}])
    assert frame.schema == {"date": pl.Date, "rate": pl.Float64, "note": pl.String,
                            "extra": pl.String}
    assert frame["extra"].to_list() == [None, "only here"]


def test_csv_of_text_with_commas_quotes_and_newlines_reads_back() -> None:
    body = (b'{"model_id": "m/1", "days": [{"date": "2026-11-30", "note": "a, \\"b\\"\\nc"}],'
            b' "community_days": []}')
    made = export_summary(body, "history", "csv", "m/1")
    assert pl.read_csv(made.body)["note"].to_list() == ['a, "b"\nc']
    assert made.filename == "history-m_1.csv"


def _doc_snippets() -> tuple[str, str]:
    text = (ROOT / "docs" / "storage.md").read_text()
    section = text.split("## Query the raw data directly", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "docs/storage.md shows one DuckDB and one Polars query"
    sql = re.search(r'duckdb\.sql\("""(.*?)"""\)', blocks[0], flags=re.S)
    assert sql is not None
    return sql.group(1), blocks[1]


def test_the_documented_queries_run_and_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_demo_history(LocalStore(tmp_path / "data"), date(2026, 11, 30))
    monkeypatch.chdir(tmp_path)
    sql, polars_code = _doc_snippets()
    from_duckdb = duckdb.sql(sql).pl()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(polars_code, namespace)  # the documentation's own snippet, as written
    from_polars = namespace["daily"]
    assert isinstance(from_polars, pl.DataFrame)
    assert len(from_polars) == 2 * 30  # two demo models x the 30 days of November
    cols = ["model_id", "year", "month", "day", "pass_rate", "rows"]
    cast = {"year": pl.Int64, "month": pl.Int64, "day": pl.Int64, "rows": pl.Int64}
    assert from_duckdb.select(cols).cast(cast).equals(from_polars.select(cols).cast(cast))
