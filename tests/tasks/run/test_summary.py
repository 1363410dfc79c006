"""The run summary as a reader sees it: numbers rounded like the CLI's tables (issue 16, item 11:
the run-summary artifact showed ``710.9000000000001``)."""

from __future__ import annotations

import json

import pytest

from flows.cli.tables import format_value
from tasks.run.summary import SUMMARY_COLUMNS, for_reader, round_value, summarize
from tests.support.helpers import record


def test_the_artifact_rows_are_rounded_for_a_reader() -> None:
    # Two latencies whose linear-interpolated p50 is not representable: 710.9000000000001.
    rows = [record(prompt_id=f"c{i}", latency_ms=ms, cost_usd=0.1 + 0.2 * i)
            for i, ms in enumerate([700.1, 721.7])]
    (raw,) = summarize(rows)
    assert raw["latency_p50_ms"] == pytest.approx(710.9) and raw["latency_p50_ms"] != 710.9
    (shown,) = for_reader([raw])
    assert shown["latency_p50_ms"] == 711 and shown["latency_p95_ms"] == 721
    assert shown["cost_usd"] == 0.4  # 0.1 + 0.30000000000000004
    assert shown["pass_rate"] == 1.0 and shown["rows"] == 2 and shown["model_id"] == "fake/stable"
    # Every number is written with its shortest form: no float noise reaches the artifact.
    text = json.dumps(shown)
    assert "0000000" not in text and "9999999" not in text


@pytest.mark.parametrize("column", SUMMARY_COLUMNS)
@pytest.mark.parametrize("value", [0.0, 0.1 + 0.2, 0.123456, 0.98765, 1.005, 12.3456, 99.9996,
                                   123.456, 710.9000000000001, 2.5e-05, 4321.987])
def test_the_rounding_is_the_cli_tables_rounding(column: str, value: float) -> None:
    """One set of rules: the CLI prints what the artifact shows, digit for digit in value."""
    assert round_value(column, value) == pytest.approx(float(format_value(column, value)),
                                                       abs=1e-12)


def test_what_is_not_a_float_is_left_alone() -> None:
    assert round_value("rows", 48) == 48
    assert round_value("cost_usd", None) is None
    assert round_value("model_id", "fake/stable") == "fake/stable"
    assert round_value("passed", True) is True
