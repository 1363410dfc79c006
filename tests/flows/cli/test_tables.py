"""The CLI's tables: numbers rounded for a reader, unknowns shown as such, one line per row when
read by a script."""

from __future__ import annotations

import pytest

from flows.cli.tables import format_value, print_table


@pytest.mark.parametrize(("column", "value", "shown"), [
    ("pass_rate", 0.95833333, "0.958"),
    ("pass_rate", None, "-"),
    ("latency_p50_ms", 412.6, "413"),
    ("cost_usd", 0.000123456, "0.0001"),
    ("cost_usd", 12.345, "12.35"),
    ("cost_usd", 0.0, "0"),
    ("rows", 24, "24"),
    ("score", 1234.5, "1234"),
    ("tier", "smoke", "smoke"),
])
def test_cells_are_rounded_for_a_reader(column: str, value: object, shown: str) -> None:
    assert format_value(column, value) == shown


def test_a_table_in_a_pipe_is_one_line_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    long = "a description long enough to wrap in eighty columns, " * 3
    rows = [{"model_id": f"provider/model-{i}", "pass_rate": i / 3, "why": long}
            for i in range(3)]
    print_table(rows, ["model_id", "pass_rate", "why"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "pass", "rate", "why"]
    body = [line.split() for line in lines[2:]]
    assert [r[:2] for r in body] == [["provider/model-0", "0.000"], ["provider/model-1", "0.333"],
                                     ["provider/model-2", "0.667"]]
