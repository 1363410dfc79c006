"""Scorer cost: the deterministic scorers per call, and code_executes' sandbox per case.

Baselines measured in the same run: a bare substring test for the text scorers, and a bare
``python -c pass`` subprocess for code_executes (the floor any subprocess sandbox pays).

    .venv/bin/python tests/bench/bench_scorers.py
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tasks.catalog import load_suite
from tasks.scorers import score

FAST_TYPES = {"exact_match", "contains", "contains_any", "contains_all", "regex", "is_json",
              "json_schema", "numeric", "not-contains_any"}


def bench_fast(rounds: int = 200) -> tuple[float, float]:
    suite = load_suite("comprehensive")
    cases = [c for c in suite.cases
             if c.assertion_type in FAST_TYPES and "example_pass" in c.metadata]

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            for c in cases:
                await score(c.metadata["example_pass"], c)
        return (time.perf_counter() - started) / (rounds * len(cases)) * 1e6

    per_call_us = asyncio.run(run())
    started = time.perf_counter()
    for _ in range(rounds):
        for c in cases:
            _ = c.ideals[0].casefold() in c.metadata["example_pass"].casefold() if c.ideals else 0
    baseline_us = (time.perf_counter() - started) / (rounds * len(cases)) * 1e6
    return per_call_us, baseline_us


def bench_code(runs: int = 15) -> tuple[float, float]:
    suite = load_suite("comprehensive")
    case = next(c for c in suite.cases if c.assertion_type == "code_executes")
    solution = case.metadata["reference_solution"]

    async def one() -> float:
        started = time.perf_counter()
        result = await score(solution, case)
        assert result.passed, result.reason
        return (time.perf_counter() - started) * 1000

    sandbox = [asyncio.run(one()) for _ in range(runs)]
    bare = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        bare.append((time.perf_counter() - started) * 1000)
    return statistics.median(sandbox), statistics.median(bare)


def main() -> None:
    fast_us, base_us = bench_fast()
    code_ms, bare_ms = bench_code()
    print(f"deterministic scorers: {fast_us:.1f} us/call vs bare substring {base_us:.2f} us "
          f"({fast_us / base_us:.0f}x)")
    print(f"code_executes: median {code_ms:.1f} ms/case vs bare python spawn {bare_ms:.1f} ms "
          f"({code_ms / bare_ms:.2f}x)")
    print(f"RESULT text_scorer_us={fast_us:.1f} code_executes_p50_ms={code_ms:.1f} "
          f"python_spawn_p50_ms={bare_ms:.1f} code_vs_spawn_ratio={code_ms / bare_ms:.2f}")


if __name__ == "__main__":
    main()
