"""The supervisor behind ``plumbline up``: ports, process groups, a dead child stops the rest."""

from __future__ import annotations

import io
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from deployments.up import Child, Stack, check_port_free
from tasks.errors import UpError
from tests.support.helpers import group_alive


def test_a_port_in_use_is_refused_with_the_flag_to_change_it() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(UpError, match=rf"port {port} .* in use.*--prefect-port"):
            check_port_free("127.0.0.1", port, "the Prefect server", "--prefect-port")


def test_stop_takes_down_grandchildren_and_children_that_ignore_sigterm() -> None:
    polite = Child("polite", ["sh", "-c", "sleep 60 & sleep 60"], dict(os.environ))
    stubborn = Child("stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & sleep 60"],
                     dict(os.environ))
    for child in (polite, stubborn):
        child.start()
    time.sleep(0.3)
    started = time.monotonic()
    polite.stop(grace=10)
    assert not group_alive(polite.pid)
    assert time.monotonic() - started < 5  # SIGTERM was enough: no waiting out the grace
    stubborn.stop(grace=0.5)
    assert not group_alive(stubborn.pid)
    assert stubborn.exited() is not None


def test_a_child_that_dies_stops_the_stack() -> None:
    out = io.StringIO()
    stack = Stack(out=out, startup_timeout=5)
    stack._launch(Child("api", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ)))
    stack._launch(Child("serve", ["sleep", "60"], dict(os.environ)))
    assert stack.supervise(poll=0.05) == 1
    assert "api exited with code 3; stopping the rest" in out.getvalue()
    serve_pid = stack.children[1].pid
    stack.stop()
    assert not group_alive(serve_pid)


def test_waiting_for_readiness_fails_fast_when_the_child_exits() -> None:
    stack = Stack(out=io.StringIO(), startup_timeout=30)
    child = Child("prefect-server", [sys.executable, "-c", "raise SystemExit(1)"],
                  dict(os.environ))
    stack._launch(child)
    started = time.monotonic()
    with pytest.raises(UpError, match="prefect-server exited with code 1 while waiting for it"):
        stack._wait("it", [child], lambda: False)
    assert time.monotonic() - started < 10
    stack.stop()


def test_the_banner_lists_urls_and_schedules() -> None:
    stack = Stack(host="127.0.0.1", prefect_port=4321, api_port=8765, out=io.StringIO())
    text = stack.banner()
    assert "Prefect UI     http://127.0.0.1:4321" in text
    assert "Plumbline API  http://127.0.0.1:8765" in text
    assert "daily-canary   cron 0 6 * * * UTC" in text
    assert "nightly        cron 0 2 * * * UTC" in text
    assert "run-suite      on demand" in text


def test_stop_asks_the_child_alone_first_so_it_can_end_its_own_children(tmp_path: Path) -> None:
    """The served flows' runner must hear SIGTERM before its flow runs' processes do: it then
    cancels them through Prefect (issue 16, item 5). A group-wide SIGTERM reached the flow runs
    first and killed them unreported, leaving them Running."""
    log = tmp_path / "log"
    grandchild = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(log)!r}, 'a').write('grandchild "
        "'), sys.exit(0)))\n"
        "time.sleep(60)\n"
    )
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import signal, subprocess, sys, time\n"
        f"gc = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        "def stop(*a):\n"
        f"    open({str(log)!r}, 'a').write('parent ')\n"
        "    gc.kill(); gc.wait(); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n"
    )
    child = Child("runner", [sys.executable, str(parent)], dict(os.environ))
    child.start()
    time.sleep(1.0)
    child.stop(grace=5)
    assert not group_alive(child.pid)
    assert log.read_text().split() == ["parent"]  # the grandchild never got a SIGTERM
