"""``plumbline run`` asks for exactly the run-suite flow's parameters, within their bounds, and
its own options (--data-dir, --concurrency) reach the run."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from flows.cli.app import app, main
from flows.run_suite import RunSuiteParams
from tasks.storage.layout import RAW
from tasks.storage.local import LocalStore
from tests.support.helpers import write_suite
from tests.support.stub_server import StubLLMServer

# How a bound reads in the help, per annotated-types constraint attribute.
BOUND_WORDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least",
               "max_length": "at most"}


def option(field: str) -> str:
    return "--" + field.replace("_", "-")


def run_help() -> dict[str, str]:
    """``plumbline run --help``, one line per option (a console wide enough not to wrap)."""
    buf = io.StringIO()
    assert app(["run", "--help"], console=Console(file=buf, width=1000)) is None
    lines = {}
    for line in buf.getvalue().splitlines():
        words = line.strip("│ ").split()
        if words and words[0].startswith("--"):
            lines[words[0]] = " ".join(line.split())
    return lines


def field_bounds(name: str) -> list[str]:
    return [f"{word} {getattr(meta, attr)}"
            for meta in RunSuiteParams.model_fields[name].metadata
            for attr, word in BOUND_WORDS.items() if hasattr(meta, attr)]


def test_help_lists_every_flow_parameter_with_its_bounds_and_description() -> None:
    lines = run_help()
    for name, field in RunSuiteParams.model_fields.items():
        if name == "part":  # set only by a parent run on its children, never typed
            assert option(name) not in lines
            continue
        line = lines.get(option(name))
        assert line is not None, f"{option(name)} missing from `plumbline run --help`"
        assert field.description and len(field.description.split()) >= 4, name
        assert " ".join(field.description.split()) in line, line
        for bound in field_bounds(name):
            assert bound in line, (name, bound, line)
    assert field_bounds("samples") == ["≥ 1", "≤ 100"]  # the helper reads the bounds at all
    for extra in ("--data-dir", "--verbose"):
        assert extra in lines


def out_of_range(name: str) -> list[str] | None:
    """Arguments that break one of the field's bounds, or None if it has none."""
    for meta in RunSuiteParams.model_fields[name].metadata:
        if getattr(meta, "min_length", None) == 1:
            return [option(name)]
        for attr, delta in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
            bound = getattr(meta, attr, None)
            if bound is not None:
                return [option(name), str(bound + delta)]
    return None


@pytest.mark.parametrize("name", [n for n in RunSuiteParams.model_fields if out_of_range(n)])
def test_a_value_out_of_bounds_is_refused_naming_the_option(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = out_of_range(name)
    assert args is not None
    assert main(["run", *args, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plumbline: error: {' '.join(args)}: "), err
    assert "plumbline run --help" in err
    assert not (tmp_path / RAW).exists()  # refused before anything ran


class CountingStub(StubLLMServer):
    """The stub LLM server, counting the requests it holds at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_flight = 0
        self.peak = 0

    async def _respond(self, path: str, headers: dict[str, str], raw: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        self.in_flight += 1  # one event loop thread serves every connection
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._respond(path, headers, raw, writer)
        finally:
            self.in_flight -= 1


@pytest.mark.prefect
def test_data_dir_and_concurrency_reach_the_run(
    prefect_harness: None, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `run` quiets Prefect through the environment; keep that inside this test.
    for name in ("PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_LOGGING_LEVEL"):
        monkeypatch.setenv(name, os.environ.get(name, "WARNING"))
    cases = [{"id": f"c-{i}", "input": f"Repeat after me: token{i}", "ideal": [f"token{i}"],
              "assertion": {"type": "contains"}} for i in range(6)]
    suite = write_suite(tmp_path / "cli-suite", cases)
    elsewhere = tmp_path / "elsewhere"
    peaks = {}
    for concurrency in (1, 3):
        with CountingStub(latency_s=0.3) as server:
            monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", f"{server.base_url}/v1")
            assert main(["run", "--suite", str(suite), "--models", "openai-compatible/m",
                         "--samples", "1", "--concurrency", str(concurrency),
                         "--run-id", f"cli-{concurrency}", "--data-dir", str(elsewhere)]) == 0
            assert server.requests == len(cases)
            peaks[concurrency] = server.peak
    assert peaks[1] == 1
    assert 2 <= peaks[3] <= 3, peaks

    out = capsys.readouterr().out
    assert "run cli-1: 6 rows (6 new)" in out and "run cli-3: 6 rows (6 new)" in out
    # The rows went to --data-dir, not to the folder PLUMBLINE_DATA_DIR names, which is back.
    assert len(LocalStore(elsewhere).list(RAW + "/")) == 2
    assert not data_dir.exists()
    assert os.environ["PLUMBLINE_DATA_DIR"] == str(data_dir)
    # The summary is one line per model, numbers rounded for a reader.
    rows = [line.split() for line in out.splitlines() if "openai-compatible/m" in line]
    assert len(rows) == 2 and all(r[1:4] == ["6", "6", "1.000"] for r in rows), rows
