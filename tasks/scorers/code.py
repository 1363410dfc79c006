"""The ``code_executes`` scorer: run the model's Python with the case's tests, sandboxed.

The code runs in a child interpreter, never in this process: in a fresh temporary directory,
with a wall-clock time limit, address-space / CPU / file-size limits (``resource.setrlimit``,
set by the child's bootstrap before any model code runs, which may not raise them again),
a minimal environment, and no network. The network is cut twice where possible: an audit hook
in the child refuses socket connects, binds and name lookups (and starting other processes,
which could shed the hook), and when ``unshare -n`` works the child also runs in an empty
network namespace, which holds even against code that calls libc directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.scorers.base import ScoreContext, ScoreResult, check_bool, check_number, scorer
from tasks.scorers.extract import fenced_candidates
from tasks.suites.model import Case

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 512
_MAX_OUTPUT_BYTES = 8 * 1024 * 1024
_SANDBOX_TAG = "plumbline-sandbox"
# Two cores are common on CI and small servers: more parallel children only queue for CPU and
# make the wall-clock limit fire on code that is merely waiting.
_SLOTS = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))

# Runs first in the child. Audit hooks cannot be removed once added, so the code under test
# cannot undo this; spawning is refused too, since a new interpreter would start without it.
_BOOTSTRAP = r'''
import json, resource, sys

# Limits first, from inside the child: setting them between fork and exec (preexec_fn) is not
# safe in a process with threads, and the scorer runs in worker threads.
_LIMITS = json.load(open("limits.json", encoding="utf-8"))
for _name, _value in _LIMITS.items():
    resource.setrlimit(getattr(resource, _name), (_value, _value))

_NET = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
        "socket.getnameinfo"}
_SPAWN = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
          "os.fork", "os.forkpty", "pty.spawn"}
_LIMIT_EVENTS = {"resource.setrlimit", "resource.prlimit"}

def _deny(event, args):
    if event in _NET:
        raise PermissionError(f"TAG: network access is blocked ({event})")
    if event in _SPAWN:
        raise PermissionError(f"TAG: starting processes is blocked ({event})")
    if event in _LIMIT_EVENTS:
        raise PermissionError(f"TAG: changing resource limits is blocked ({event})")

def main():
    solution = open("solution.py", encoding="utf-8").read()
    tests = json.load(open("tests.json", encoding="utf-8"))
    sys.addaudithook(_deny)
    # With tests, the tests decide: a demo `if __name__ == "__main__":` block (often reading
    # input()) does not run. Without tests the output is a script and runs as one.
    env = {"__name__": "solution" if tests else "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(solution, "solution.py", "exec"), env)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    failures = []
    for i, test in enumerate(tests):
        try:
            exec(compile(test, f"test_{i + 1}.py", "exec"), env)
        except BaseException as exc:  # a test's SystemExit or KeyboardInterrupt is a failure too
            import traceback  # only on failure: it costs ~20 ms of start-up per case

            last = traceback.extract_tb(exc.__traceback__)[-1]
            failures.append({"test": i + 1, "error": f"{type(exc).__name__}: {exc}",
                             "where": f"{last.filename}:{last.lineno}"})
    with open("result.json", "w", encoding="utf-8") as fh:
        json.dump({"tests": len(tests), "failures": failures}, fh)
    sys.exit(1 if failures else 0)

main()
'''.replace("TAG", _SANDBOX_TAG)


@dataclass(frozen=True)
class RunOutcome:
    returncode: int | None  # None: killed by the wall-clock limit
    stdout: str
    stderr: str
    result: dict[str, Any] | None


def extract_code(output: str) -> str:
    """The Python in a model's answer: the first ```python block, else the first untagged block,
    else the whole output (a truncated, unclosed fence loses its opening line)."""
    blocks = fenced_candidates(output, ("python", "py", "python3", "py3"))
    if blocks:
        return blocks[0]
    text = output.strip()
    if text.startswith(("```", "~~~")):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rstrip().removesuffix("```").removesuffix("~~~")
    return text


@lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """``unshare -n`` (or ``-rn`` for an unprivileged user) when this machine allows it."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    for flags in (("-n",), ("-r", "-n")):
        try:
            probe = subprocess.run([exe, *flags, "true"], capture_output=True, timeout=5,
                                   check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return (exe, *flags)
    return ()


def _limits(timeout_s: float, memory_mb: int) -> dict[str, int]:
    mem = memory_mb * 1024 * 1024
    return {
        "RLIMIT_AS": mem,
        # CPU seconds: a backstop to the wall-clock limit should the parent fail to kill it.
        "RLIMIT_CPU": int(timeout_s) + 1,
        "RLIMIT_FSIZE": _MAX_OUTPUT_BYTES,
        "RLIMIT_CORE": 0,
    }


def run_sandboxed(code: str, tests: list[str], timeout_s: float, memory_mb: int) -> RunOutcome:
    """Run ``code`` then each test in a limited child interpreter; blocks until it ends."""
    with _SLOTS, tempfile.TemporaryDirectory(prefix="plumbline-code-") as tmp:
        work = Path(tmp)
        (work / "solution.py").write_text(code, encoding="utf-8")
        (work / "tests.json").write_text(json.dumps(tests), encoding="utf-8")
        (work / "run.py").write_text(_BOOTSTRAP, encoding="utf-8")
        (work / "limits.json").write_text(json.dumps(_limits(timeout_s, memory_mb)))
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        argv = [*network_namespace_prefix(), sys.executable, "-I", "run.py"]
        with (work / "stdout.txt").open("wb") as out, (work / "stderr.txt").open("wb") as err:
            proc = subprocess.Popen(
                argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True,  # its own process group, so a timeout kills it all
            )
            try:
                returncode: int | None = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        result_file = work / "result.json"
        try:
            result = json.loads(result_file.read_text()) if result_file.is_file() else None
        except (OSError, ValueError):
            result = None
        return RunOutcome(returncode, _tail(work / "stdout.txt"), _tail(work / "stderr.txt"),
                          result)


def _tail(path: Path, limit: int = 4000) -> str:
    data = path.read_bytes()[-limit:]
    return data.decode("utf-8", errors="replace")


def _tests(opts: dict[str, Any]) -> list[str]:
    tests = opts.get("tests", [])
    return [tests] if isinstance(tests, str) else list(tests)


def _check(case: Case, opts: dict[str, Any]) -> list[tuple[str, str]]:
    problems = check_bool(opts, "extract_code")
    problems += check_number(opts, "timeout", low=0.0, high=120.0, low_open=True)
    problems += check_number(opts, "memory_mb", low=64, high=16384, integer=True)
    tests = opts.get("tests", [])
    if not (isinstance(tests, str) or (isinstance(tests, list)
                                        and all(isinstance(t, str) for t in tests))):
        return [*problems, ("assertion.tests", "must be Python source: a string or a list")]
    for i, test in enumerate(_tests(opts)):
        try:
            compile(test, f"test_{i + 1}.py", "exec")
        except SyntaxError as exc:
            where = "assertion.tests" if isinstance(tests, str) else f"assertion.tests[{i}]"
            problems.append((where, f"test is not valid Python: {exc.msg} (line {exc.lineno})"))
    return problems


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


_NET_BLOCKED = re.compile(rf"{_SANDBOX_TAG}: network access is blocked \(([\w.]+)\)")


def explain(outcome: RunOutcome, n_tests: int, timeout_s: float, memory_mb: int) -> ScoreResult:
    """Turn a child's outcome into a verdict a reader understands."""
    if outcome.returncode is None:
        return ScoreResult.ok(False, f"timed out after {timeout_s:g} s", 0.0)
    failures = (outcome.result or {}).get("failures", [])
    text = outcome.stderr + "\n" + "\n".join(f["error"] for f in failures)
    blocked = _NET_BLOCKED.search(text)
    if blocked:
        event = blocked[1]
        return ScoreResult.ok(False, f"the code tried to use the network ({event}); network "
                              "access is blocked in code_executes", 0.0)
    if re.search(rf"{_SANDBOX_TAG}: starting processes is blocked \((?!\{{)", text):
        return ScoreResult.ok(False, "the code tried to start another process; that is blocked "
                              "in code_executes", 0.0)
    if re.search(rf"{_SANDBOX_TAG}: changing resource limits is blocked \((?!\{{)", text):
        return ScoreResult.ok(False, "the code tried to change its resource limits; that is "
                              "blocked in code_executes", 0.0)
    if "MemoryError" in text:
        return ScoreResult.ok(False, f"ran out of memory (limit {memory_mb} MB)", 0.0)
    if outcome.returncode < 0:
        sig = signal.Signals(-outcome.returncode)
        why = {signal.SIGXCPU: f"used more than {int(timeout_s) + 1} s of CPU",
               signal.SIGXFSZ: "wrote too much output",
               signal.SIGKILL: f"was killed (likely over the {memory_mb} MB memory limit)",
               }.get(sig, f"was killed by {sig.name}")
        return ScoreResult.ok(False, f"the code {why}", 0.0)
    if outcome.result is None:
        if outcome.returncode == 0:
            return ScoreResult.ok(False, "the code ended the process before its tests ran "
                                  "(os._exit?)", 0.0)
        # The solution itself raised before any test ran.
        last = _last_line(outcome.stderr) or f"exit status {outcome.returncode}"
        return ScoreResult.ok(False, f"the code failed: {last}", 0.0)
    if not failures and outcome.returncode == 0:
        what = f"{n_tests} test(s) passed" if n_tests else "ran without error (no tests)"
        return ScoreResult.ok(True, what, 1.0)
    passed = n_tests - len(failures)
    first = failures[0] if failures else {"test": "?", "error": _last_line(outcome.stderr),
                                          "where": "?"}
    return ScoreResult.ok(
        False,
        f"{passed}/{n_tests} test(s) passed; test {first['test']} failed at {first['where']}: "
        f"{first['error']}",
        passed / n_tests if n_tests else 0.0,
    )


@scorer(
    "code_executes",
    description="Runs the Python in the output (the first ```python block, else the whole "
    "output; extract_code=false runs the output as is) followed by each of `tests`, in a "
    "sandboxed subprocess: temp dir, `timeout` s (default 10), `memory_mb` (default 512), no "
    "network. Passes when all tests pass; score is the share passed.",
    options=("tests", "timeout", "memory_mb", "extract_code"),
    negatable=False,
    check=_check,
)
async def code_executes(
    output: str, case: Case, opts: dict[str, Any], ctx: ScoreContext
) -> ScoreResult:
    code = extract_code(output) if opts.get("extract_code", True) else output
    if not code.strip():
        return ScoreResult.ok(False, "no Python code in the output", 0.0)
    try:
        compile(code, "solution.py", "exec")
    except SyntaxError as exc:
        return ScoreResult.ok(False, f"the code is not valid Python: {exc.msg} "
                              f"(line {exc.lineno})", 0.0)
    except ValueError as exc:  # e.g. a NUL byte in the source
        return ScoreResult.ok(False, f"the code cannot be compiled: {exc}", 0.0)
    tests = _tests(opts)
    timeout_s = float(opts.get("timeout", DEFAULT_TIMEOUT_S))
    memory_mb = int(opts.get("memory_mb", DEFAULT_MEMORY_MB))
    outcome = await asyncio.to_thread(run_sandboxed, code, tests, timeout_s, memory_mb)
    return explain(outcome, len(tests), timeout_s, memory_mb)
