"""``plumbline run`` asks for exactly the run-suite flow's parameters, within their bounds, its
own options (--data-dir, --concurrency) reach the run, and it says which Prefect API it uses: a
configured server that answers, a temporary one when none is configured, and an error (not a
silent fallback) when the configured one is down."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_origin

import pytest
from rich.console import Console

from flows.cli.app import app, main
from flows.cli.common import free_port, names_a_server
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
            lines[words[0].split(",")[0]] = " ".join(line.split())
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
    field = RunSuiteParams.model_fields[name]
    for meta in field.metadata:
        if getattr(meta, "min_length", None) == 1:
            # A list option given no value; a text option given an empty one.
            return [option(name)] if get_origin(field.annotation) is list else [option(name), ""]
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

    captured = capsys.readouterr()
    out = captured.out
    assert "run cli-1: 6 rows (6 new)" in out and "run cli-3: 6 rows (6 new)" in out
    # The harness's server answers its health check: the command says it used it.
    assert "Prefect: using the server at http://127.0.0.1:" in captured.err
    # The rows went to --data-dir, not to the folder PLUMBLINE_DATA_DIR names, which is back.
    assert len(LocalStore(elsewhere).list(RAW + "/")) == 2
    assert not data_dir.exists()
    assert os.environ["PLUMBLINE_DATA_DIR"] == str(data_dir)
    # The summary is one line per model, numbers rounded for a reader.
    rows = [line.split() for line in out.splitlines() if "openai-compatible/m" in line]
    assert len(rows) == 2 and all(r[1:4] == ["6", "6", "1.000"] for r in rows), rows


def test_a_configured_server_that_does_not_answer_stops_the_run_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    monkeypatch.setenv("PREFECT_API_URL", url)
    started = os.times().elapsed
    with temporary_settings(updates={PREFECT_API_URL: url}):
        assert main(["run", "--models", "fake/stable", "--data-dir", str(tmp_path)]) == 2
    assert os.times().elapsed - started < 10  # a short probe, not Prefect's long retries
    err = capsys.readouterr().err
    assert err.startswith(f"plumbline: error: the Prefect server at {url} (PREFECT_API_URL) is "
                          "not usable: no answer within 1.5 s"), err
    assert "prefect server start" in err and "plumbline run --ephemeral" in err
    assert not (tmp_path / RAW).exists()


def test_with_no_server_configured_the_run_uses_a_temporary_api_and_says_so(
    tmp_path: Path,
) -> None:
    """The user's path with nothing set up: `plumbline run` in a fresh shell and Prefect home."""
    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "PLUMBLINE_"))}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PYTHONPATH": str(root),
                "PLUMBLINE_DATA_DIR": str(tmp_path / "data"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--suite", "smoke", "--models",
         "fake/stable", "--samples", "1"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stderr.splitlines()[0]
    assert first.startswith("Prefect: no server configured, so a temporary local Prefect API "
                            "runs this"), first
    assert "prefect server start" in first
    assert re.search(r"^run smoke-\S+: 8 rows \(8 new\)$", done.stdout, re.M), done.stdout
    assert len(LocalStore(tmp_path / "data").list(RAW + "/")) == 1
    # The temporary server wrote its database where Prefect keeps it, and stopped with us.
    assert (tmp_path / "prefect-home" / "prefect.db").exists()
    assert not [p for p in Path("/proc").glob("[0-9]*")
                if _cmdline(p).count(str(tmp_path / "prefect-home")) and
                "uvicorn" in _cmdline(p)]
    # A usage error still exits 2 with its message (the fast exit keeps the status and flushes).
    bad = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--samples", "0"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("plumbline: error: --samples 0: "), bad.stderr


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "environ").read_bytes().decode(errors="replace") + (
            proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize(("env", "profiles", "named"), [
    ({"PREFECT_API_URL": "http://prefect:4200/api"}, None, True),
    ({}, None, False),  # no profiles file: Prefect's default, ephemeral
    ({}, 'active = "remote"\n[profiles.remote]\nPREFECT_API_URL = "http://p:4200/api"\n', True),
    ({}, 'active = "local"\n[profiles.local]\nPREFECT_LOGGING_LEVEL = "INFO"\n', False),
    ({"PREFECT_PROFILE": "remote"},
     'active = "local"\n[profiles.local]\n[profiles.remote]\nPREFECT_API_URL = "http://p"\n',
     True),
    ({}, "not [ toml", False),
])
def test_the_early_guess_reads_the_environment_and_the_active_profile(
    tmp_path: Path, env: dict[str, str], profiles: str | None, named: bool
) -> None:
    if profiles is not None:
        (tmp_path / "profiles.toml").write_text(profiles)
    assert names_a_server({**env, "PREFECT_HOME": str(tmp_path)}) is named


def test_a_terminal_run_has_no_heartbeats_unless_the_user_set_them() -> None:
    """Prefect's heartbeat thread (every 180 s by default) is joined when the flow ends; a run
    in the terminal goes without, and only that setting changes. A frequency the user chose
    (environment or profile) is kept."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    from flows.cli.run import without_heartbeats

    before = get_current_settings()
    assert before.flows.heartbeat_frequency is not None
    with without_heartbeats():
        during = get_current_settings()
        assert during.flows.heartbeat_frequency is None
        assert during.model_dump(exclude={"flows"}) == before.model_dump(exclude={"flows"})
        assert during.flows.model_dump(exclude={"heartbeat_frequency"}) == \
            before.flows.model_dump(exclude={"heartbeat_frequency"})
    assert get_current_settings().flows.heartbeat_frequency == before.flows.heartbeat_frequency
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}), \
            without_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency == 60


def test_prefetch_imports_in_the_background_and_leaves_errors_to_the_real_import(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli.common import prefetch

    (tmp_path / "prefetched_ok.py").write_text("VALUE = 42\n")
    (tmp_path / "prefetched_broken.py").write_text("raise RuntimeError('broken on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("prefetched_ok", "prefetched_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    thread = prefetch("prefetched_ok", "prefetched_broken")
    thread.join(timeout=10)
    assert not thread.is_alive() and thread.daemon
    assert sys.modules["prefetched_ok"].VALUE == 42
    assert "prefetched_broken" not in sys.modules  # a failed import leaves nothing behind
    with pytest.raises(RuntimeError, match="broken on import"):  # the real import says why
        import prefetched_broken  # noqa: F401
