"""The CLI's surface: every command explains itself; serve refuses to run without a server;
the canary and compaction flows do what their deployments promise."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.cli.app import main
from tasks.errors import PlumblineError
from tasks.identity import USER_SCHEDULER
from tasks.records.io import write_records
from tasks.settings import Settings
from tasks.storage.layout import RAW
from tasks.storage.local import LocalStore
from tests.deployments.support import ROOT
from tests.support.helpers import record

COMMANDS = ["demo", "run", "nightly", "serve", "up", "api", "submit", "suites", "suites list",
            "suites validate", "models"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_says_what_it_does(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: plumbline {command}")
    summary, description = (" ".join(p.split()) for p in out.split("\n\n")[1:3])
    # A sentence in the list of commands, more on the command's own page.
    assert len(summary.split()) >= 4 and not summary.startswith("Usage"), summary
    assert len(description.split()) >= 8 and not description.startswith("╭"), description


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in {c.split()[0] for c in COMMANDS}:
        assert f"│ {command} " in out, command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tasks import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"plumbline {__version__}"


def test_a_mistyped_option_is_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suites", "list", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plumbline: error: ") and "--bogus" in err.splitlines()[0]
    assert "plumbline suites list --help" in err


def test_another_distributions_tasks_package_stops_plumbline(tmp_path: Path) -> None:
    """A package named `tasks` earlier on the path (here a folder on PYTHONPATH; in a shared
    environment, another distribution) would be imported in place of Plumbline's."""
    fake = tmp_path / "elsewhere" / "tasks"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""Someone else\'s tasks."""\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}
    for argv in (["--version"], ["suites", "list"]):
        res = subprocess.run([sys.executable, "-m", "flows.cli", *argv], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert res.stdout == ""
        message = " ".join(res.stderr.split())
        assert "'tasks'" in message and str(fake / "__init__.py") in message
        assert "Plumbline wants its own virtual environment" in message
        assert "Traceback" not in res.stderr
    # The same command with Plumbline's own packages first works.
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-m", "flows.cli", "--version"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("plumbline "), res.stderr


def test_serve_without_a_prefect_server_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PREFECT_HOME": str(tmp_path), "HOME": str(tmp_path),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "flows.cli", "serve"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "needs a running Prefect server" in res.stderr and "plumbline up" in res.stderr


def test_tracked_models_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.daily_canary import DailyCanaryParams, resolve_models

    monkeypatch.setenv("PLUMBLINE_TRACKED_MODELS", "openai/gpt-4o, anthropic/claude-sonnet-4-5")
    settings = Settings()
    assert settings.tracked_models == ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"]
    assert resolve_models(DailyCanaryParams(), settings) == settings.tracked_models
    assert resolve_models(DailyCanaryParams(models=["fake/stable"]), settings) == ["fake/stable"]
    monkeypatch.setenv("PLUMBLINE_TRACKED_MODELS", '["fake/stable"]')
    assert Settings().tracked_models == ["fake/stable"]
    with pytest.raises(PlumblineError, match="PLUMBLINE_TRACKED_MODELS"):
        resolve_models(DailyCanaryParams(), Settings(tracked_models=[]))
    # The Prefect variable wins over the environment; the parameter wins over both.
    for value in (["openai/gpt-4o-mini"], '["openai/gpt-4o-mini"]', " openai/gpt-4o-mini "):
        assert resolve_models(DailyCanaryParams(), settings, value) == ["openai/gpt-4o-mini"]
    assert resolve_models(DailyCanaryParams(models=["a/b"]), settings, ["c/d"]) == ["a/b"]
    with pytest.raises(PlumblineError, match="plumbline_tracked_models must be a list"):
        resolve_models(DailyCanaryParams(), settings, {"openai": "gpt-4o"})


@pytest.mark.prefect
def test_daily_canary_runs_each_suite_and_reports_a_broken_one(
    prefect_harness: None, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.daily_canary import DailyCanaryParams, daily_canary
    from tasks.errors import CanaryFailed

    monkeypatch.setenv("PLUMBLINE_TRACKED_MODELS", "fake/stable")
    out = daily_canary(DailyCanaryParams(suites=["smoke"], samples=1))
    assert out["models"] == ["fake/stable"]
    (run,) = out["runs"]
    assert run["suite"] == "smoke" and run["rows"] > 0
    store = LocalStore(data_dir)
    keys = [o.key for o in store.list(RAW + "/")]
    assert keys and all("/user=scheduler/scheduled_" in k for k in keys)

    # Tracked models from the Prefect variable, as an operator sets them in the UI.
    from prefect.variables import Variable

    from flows.daily_canary import TRACKED_MODELS_VARIABLE

    Variable.set(TRACKED_MODELS_VARIABLE, ["fake/drifting"], overwrite=True)
    try:
        assert daily_canary(DailyCanaryParams(suites=["smoke"], samples=1))["models"] == [
            "fake/drifting"]
    finally:
        Variable.unset(TRACKED_MODELS_VARIABLE)
    keys = [o.key for o in store.list(RAW + "/")]

    # A missing suite fails the canary, but only after the good suite has run and been stored.
    with pytest.raises(CanaryFailed, match=r"no-such-suite \(completed: smoke\)"):
        daily_canary(DailyCanaryParams(suites=["no-such-suite", "smoke"], samples=1))
    assert len(store.list(RAW + "/")) == len(keys) + 1


@pytest.mark.prefect
def test_compaction_merges_each_day_and_keeps_every_row(
    prefect_harness: None, data_dir: Path
) -> None:
    from flows.compaction import compaction

    store = LocalStore(data_dir)
    day1 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    day2 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    for i in range(3):
        write_records(store, [record(prompt_id=f"c{i}", timestamp=day1)],
                      user_id=USER_SCHEDULER, source="scheduled")
    write_records(store, [record(prompt_id="d", timestamp=day2)], user_id=USER_SCHEDULER,
                  source="scheduled")
    out = compaction()
    assert out == {"days": 2, "files_in": 3, "rows": 3}
    keys = [o.key for o in store.list(RAW + "/")]
    assert len([k for k in keys if "day=01" in k]) == 1
    assert len([k for k in keys if "day=02" in k]) == 1
    # Only the requested days, and a second pass finds nothing left to merge.
    assert compaction(days=[day1.date()]) == {"days": 1, "files_in": 0, "rows": 0}


def test_main_reports_configuration_errors_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PLUMBLINE_DATA_DIR", str(tmp_path))
    assert main(["submit", "no-such-run", "--api-url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.startswith("plumbline: error: no rows of run 'no-such-run'")
