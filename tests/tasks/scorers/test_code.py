"""code_executes: real child processes, real limits. Each test spawns one short interpreter."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tasks.scorers import ScoreResult, score, validate_assertion
from tasks.scorers.code import extract_code, network_namespace_prefix, run_sandboxed
from tasks.suites.model import Case

ADD_TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]


def case(**options: Any) -> Case:
    return Case(id="code-1", input="Write add(a, b).",
                assertion={"type": "code_executes", **options})


def run(output: str, c: Case) -> ScoreResult:
    return asyncio.run(score(output, c))


def test_fenced_solution_passes_its_tests() -> None:
    output = "Sure! Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```\nEnjoy."
    result = run(output, case(tests=ADD_TESTS))
    assert result.passed is True
    assert result.score == 1.0
    assert "2 test(s) passed" in result.reason


def test_wrong_solution_scores_the_share_of_tests_passed() -> None:
    tests = [*ADD_TESTS, "assert add(2, 2) == 4"]
    result = run("def add(a, b):\n    return a * b\n", case(tests=tests))
    assert result.passed is False
    assert result.score == pytest.approx(1 / 3)
    assert "test 1 failed" in result.reason and "AssertionError" in result.reason


def test_code_that_loops_forever_times_out() -> None:
    started = time.monotonic()
    result = run("```python\nwhile True:\n    pass\n```", case(timeout=1.5))
    assert result.passed is False
    assert result.reason == "timed out after 1.5 s"
    assert time.monotonic() - started < 10


def test_code_that_imports_socket_and_connects_is_refused() -> None:
    code = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
            "s.connect(('93.184.216.34', 80))\n")
    result = run(code, case())
    assert result.passed is False
    assert "network" in result.reason and "socket.connect" in result.reason


def test_name_lookups_are_refused_too() -> None:
    result = run("import socket\nsocket.getaddrinfo('example.com', 443)\n", case())
    assert result.passed is False and "network" in result.reason


@pytest.mark.skipif(not network_namespace_prefix(), reason="unshare -n is not available here")
def test_child_sees_no_network_interfaces_but_loopback() -> None:
    code = ("names = [ln.split(':')[0].strip() for ln in open('/proc/net/dev').read()"
            ".splitlines()[2:]]\nassert names == ['lo'], names\n")
    assert run(code, case()).passed is True


def test_starting_a_process_is_refused() -> None:
    result = run("import subprocess\nsubprocess.run(['true'])\n", case())
    assert result.passed is False and "process" in result.reason


def test_memory_limit() -> None:
    result = run("block = bytearray(400 * 1024 * 1024)\n", case(memory_mb=128))
    assert result.passed is False
    assert "memory" in result.reason


def test_runs_in_a_fresh_temp_dir_that_is_removed_afterwards() -> None:
    code = "import os\nopen('scratch.txt', 'w').write('x')\nprint(os.getcwd())\n"
    outcome = run_sandboxed(code, ["import os\nassert os.path.exists('scratch.txt')"], 5, 256)
    workdir = Path(outcome.stdout.strip())
    assert outcome.returncode == 0
    assert workdir.name.startswith("plumbline-code-")
    assert not workdir.exists()


def test_syntax_error_and_missing_code() -> None:
    bad = run("```python\ndef add(a, b)\n    return a + b\n```", case(tests=ADD_TESTS))
    assert bad.passed is False and "not valid Python" in bad.reason
    empty = run("```python\n```", case(tests=ADD_TESTS))
    assert empty.passed is False and "no Python code" in empty.reason


def test_exception_in_the_solution_is_reported() -> None:
    result = run("raise RuntimeError('boom')", case())
    assert result.passed is False
    assert "RuntimeError: boom" in result.reason


def test_extract_code_prefers_python_blocks_and_handles_unclosed_fences() -> None:
    text = "```bash\npip install x\n```\n```python\nx = 1\n```"
    assert extract_code(text) == "x = 1\n"
    assert extract_code("```python\nx = 2\n").strip() == "x = 2"
    assert extract_code("x = 3") == "x = 3"


def test_extract_code_false_runs_the_output_as_is() -> None:
    fenced = "```python\ndef add(a, b):\n    return a + b\n```"
    result = run(fenced, case(tests=ADD_TESTS, extract_code=False))
    assert result.passed is False and "not valid Python" in result.reason


@pytest.mark.parametrize(("options", "field"), [
    ({"tests": "assert (("}, "assertion.tests"),
    ({"tests": ["assert True", "def"]}, "assertion.tests[1]"),
    ({"tests": 5}, "assertion.tests"),
    ({"timeout": 0}, "assertion.timeout"),
    ({"memory_mb": 10}, "assertion.memory_mb"),
])
def test_bad_code_options_are_load_problems(options: dict[str, Any], field: str) -> None:
    assert field in [f for f, _ in validate_assertion(case(**options))]


def test_code_cannot_raise_its_own_limits() -> None:
    code = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
    result = run(code, case())
    assert result.passed is False and "resource limits" in result.reason


def test_a_demo_main_block_does_not_run_when_there_are_tests() -> None:
    code = ("def add(a, b):\n    return a + b\n\n"
            "if __name__ == '__main__':\n    print(add(int(input()), 1))\n")
    assert run(code, case(tests=ADD_TESTS)).passed is True
    # Without tests the output is a script: it runs, and input() at EOF fails it.
    result = run(code, case())
    assert result.passed is False and "EOFError" in result.reason


def test_exiting_early_is_not_a_pass() -> None:
    assert run("import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b\n",
               case(tests=ADD_TESTS)).passed is False
    hard = run("import os\nos._exit(0)\n", case(tests=ADD_TESTS))
    assert hard.passed is False and "before its tests ran" in hard.reason
    assert run("import sys\nsys.exit(3)\n", case()).passed is False
