"""The shipped suites: they validate, their scorers exist, their ideals are right, and the
offline fake models behave on them as the demo and the drift tests expect."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tasks.catalog import load_suite
from tasks.errors import SuiteError
from tasks.providers.registry import ProviderRegistry
from tasks.run.cells import run_cells
from tasks.run.plan import resolve_config
from tasks.scorers import get_scorer, registered, score
from tasks.scorers.semantic import embeddings_available
from tasks.suites.load import SHIPPED_SUITES_DIR, list_suites
from tasks.suites.model import Case, Suite

SHIPPED = [p for p in list_suites() if p.parent == SHIPPED_SUITES_DIR]
CATEGORIES = {"reasoning", "factual", "instruction_following", "coding", "safety", "creative"}


@pytest.fixture(scope="module")
def suites() -> dict[str, Suite]:
    return {p.name: load_suite(p) for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_suite_validates(path: Path) -> None:
    suite = load_suite(path)
    assert suite.cases
    assert suite.hash.startswith("sha256:")


def test_registry_self_check(suites: dict[str, Suite]) -> None:
    used = Counter(c.assertion_type for s in suites.values() for c in s.cases)
    unresolved = [t for t in used if get_scorer(t) is None]
    assert unresolved == []
    for name, spec in registered().items():
        assert len(spec.description.split()) >= 5, f"scorer {name} needs a real description"
    required = {"exact_match", "contains", "contains_any", "contains_all", "regex", "is_json",
                "json_schema", "numeric", "code_executes", "llm_judge", "semantic_similarity"}
    assert required <= set(registered())


@pytest.mark.parametrize(("name", "count"), [("cheap", 10), ("moderate", 25),
                                              ("comprehensive", 75)])
def test_tiered_suites_cover_all_six_categories(suites: dict[str, Suite], name: str,
                                                count: int) -> None:
    suite = suites[name]
    assert len(suite.cases) == count
    assert {c.category for c in suite.cases} == CATEGORIES


def _example_cases(suites: dict[str, Suite]) -> list[Case]:
    return [c for s in suites.values() for c in s.cases if "example_pass" in c.metadata]


def test_every_worked_example_passes_its_own_case(suites: dict[str, Suite]) -> None:
    """Each case ships an answer a careful human would give; the case must accept it. This is
    what keeps an ideal, a pattern or a test from silently being wrong."""
    examples = _example_cases(suites)
    assert len(examples) > 80

    async def check() -> list[str]:
        bad = []
        for c in examples:
            result = await score(c.metadata["example_pass"], c)
            if result.skipped and c.assertion_type == "semantic_similarity" \
                    and not embeddings_available():
                continue
            if result.passed is not True:
                bad.append(f"{c.id}: {result.reason}")
        return bad

    assert asyncio.run(check()) == []


def test_wrong_answers_fail_the_tiered_suites(suites: dict[str, Suite]) -> None:
    """The fake models' two wrong sentences must not pass a non-safety case by accident."""
    wrong = ["I am not certain about this one.", "Sorry, I can't determine that."]

    async def check() -> list[str]:
        bad = []
        for name in ("cheap", "moderate", "comprehensive"):
            for c in suites[name].cases:
                if c.category == "safety" or c.assertion_type in ("llm_judge",
                                                                  "semantic_similarity"):
                    continue
                for text in wrong:
                    if (await score(text, c)).passed:
                        bad.append(f"{c.id} passes {text!r}")
        return bad

    assert asyncio.run(check()) == []


def test_reference_solutions_pass_their_tests(suites: dict[str, Suite]) -> None:
    runs: dict[str, Case] = {}
    for s in suites.values():
        for c in s.cases:
            if c.assertion_type == "code_executes":
                assert "reference_solution" in c.metadata, c.id
                runs.setdefault(json.dumps([c.metadata["reference_solution"],
                                            c.assertion]), c)

    async def check() -> list[str]:
        results = [(c.id, await score(c.metadata["reference_solution"], c))
                   for c in runs.values()]
        return [f"{cid}: {r.reason}" for cid, r in results if r.passed is not True]

    assert len(runs) >= 10
    assert asyncio.run(check()) == []


def test_a_corrupted_copy_fails_with_file_and_line(tmp_path: Path) -> None:
    copy = tmp_path / "cheap"
    shutil.copytree(SHIPPED_SUITES_DIR / "cheap", copy)
    lines = (copy / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][:-5]  # a truncated line: bad JSON
    row = json.loads(lines[6])
    row["assertion"]["type"] = "contains_roughly"
    lines[6] = json.dumps(row)
    row = json.loads(lines[8])
    row["id"] = json.loads(lines[0])["id"]
    lines[8] = json.dumps(row)
    (copy / "cases.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        load_suite(copy)
    text = str(err.value)
    cases_file = copy / "cases.jsonl"
    assert f"{cases_file}:4: invalid JSON" in text
    assert f"{cases_file}:7: [assertion.type] unknown assertion type 'contains_roughly'" in text
    assert f"{cases_file}:9: [id] duplicate id 'cheap-001' (first on line 1)" in text
    assert len(err.value.problems) == 3


# --- drift-canary: ideals are computed, and re-computed here ------------------------------------

def _generator() -> ModuleType:
    path = SHIPPED_SUITES_DIR / "drift-canary" / "generate.py"
    spec = importlib.util.spec_from_file_location("drift_canary_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_drift_canary_file_is_what_the_generator_writes() -> None:
    committed = (SHIPPED_SUITES_DIR / "drift-canary" / "cases.jsonl").read_text(encoding="utf-8")
    assert _generator().render() == committed


def _prime(n: int) -> bool:
    # Independent of the generator's trial division: a deterministic Miller-Rabin for n < 3.4e14.
    if n < 2:
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17):
        if a % n == 0:
            continue
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _happy(n: int) -> bool:
    # Floyd's cycle detection rather than the generator's seen-set.
    def step(k: int) -> int:
        return sum(int(d) ** 2 for d in str(k))
    slow, fast = n, step(n)
    while fast != 1 and slow != fast:
        slow, fast = step(slow), step(step(fast))
    return fast == 1


def test_drift_canary_ideals_recomputed_independently(suites: dict[str, Suite]) -> None:
    cases = suites["drift-canary"].cases
    tasks = Counter(c.metadata["task"] for c in cases)
    assert tasks["prime"] >= 10 and tasks["happy"] >= 5 and tasks["code"] >= 5
    assert tasks["refusal"] >= 5 and sum(v for k, v in tasks.items()
                                         if k.startswith("format")) >= 5
    primes = [c for c in cases if c.metadata["task"] == "prime"]
    assert {_prime(c.metadata["n"]) for c in primes} == {True, False}  # both answers occur
    for c in primes:
        n = c.metadata["n"]
        assert str(n) in c.input
        assert c.ideals == ["[Yes]" if _prime(n) else "[No]"], c.id
    for c in (c for c in cases if c.metadata["task"] == "happy"):
        lo, hi = c.metadata["lo"], c.metadata["hi"]
        assert f"between {lo} and {hi}" in c.input
        assert c.ideals == [str(sum(_happy(n) for n in range(lo, hi + 1)))], c.id
    for c in (c for c in cases if c.metadata["task"] == "format_brackets"):
        assert c.ideals == [" ".join(f"[{w}]" for w in c.metadata["sentence"].split())]
    for c in (c for c in cases if c.metadata["task"] == "format_json"):
        a, b = c.metadata["a"], c.metadata["b"]
        props = c.assertion["schema"]["properties"]
        assert (props["sum"]["const"], props["product"]["const"]) == (a + b, a * b)


@pytest.mark.parametrize(("output", "passed"), [
    ("12871 = 61 × 211, so it is composite.\n[No]", True),
    ("At first glance [Yes], but 12871 = 61 × 211.\n[No]", True),
    ("I checked: [No] ... actually [Yes]", False),
    ("No", False),  # the strict format is part of the task
])
def test_drift_canary_takes_the_last_bracketed_answer(suites: dict[str, Suite], output: str,
                                                      passed: bool) -> None:
    case = next(c for c in suites["drift-canary"].cases if c.metadata.get("n") == 12871)
    assert case.ideals == ["[No]"]
    assert asyncio.run(score(output, case)).passed is passed


def test_drift_canary_json_format_is_strict(suites: dict[str, Suite]) -> None:
    case = next(c for c in suites["drift-canary"].cases
                if c.metadata["task"] == "format_json" and c.metadata["a"] == 17)
    assert asyncio.run(score('{"sum": 40, "product": 391}', case)).passed is True
    fenced = '```json\n{"sum": 40, "product": 391}\n```'
    assert asyncio.run(score(fenced, case)).passed is False
    assert asyncio.run(score('{"sum": 40, "product": 390}', case)).passed is False


# --- the fake models on the cheap suite ----------------------------------------------------------

def _pass_rates(suite: Suite, model_id: str, days: list[int], **overrides: Any) -> list[float]:
    async def one(day: int) -> float:
        config = resolve_config(suite, as_of=datetime(2026, 11, day, 6, tzinfo=UTC),
                                run_id=f"t-{day}", **overrides)
        rows = await run_cells(suite, model_id, suite.cases, config, ProviderRegistry())
        assert all(r["passed"] is not None for r in rows), "every cheap case is scorable"
        return sum(r["passed"] for r in rows) / len(rows)

    async def all_days() -> list[float]:
        return [await one(d) for d in days]

    return asyncio.run(all_days())


def test_fake_stable_passes_cheap_at_a_steady_high_rate(suites: dict[str, Suite]) -> None:
    cheap = suites["cheap"]
    at_zero = _pass_rates(cheap, "fake/stable", [2, 9, 16], samples=5)
    assert len(set(at_zero)) == 1  # temperature 0: the same outputs every day
    assert 0.8 <= at_zero[0] < 1.0
    sampled = _pass_rates(cheap, "fake/stable", [2, 9, 16], samples=5, temperature=0.7)
    assert all(0.8 <= r <= 1.0 for r in sampled), sampled


def test_fake_drifting_pass_rate_drops_after_its_drift_date(suites: dict[str, Suite]) -> None:
    before, after = _pass_rates(suites["cheap"], "fake/drifting@2026-11-10", [9, 10], samples=5)
    stable_before, stable_after = _pass_rates(suites["cheap"], "fake/stable", [9, 10], samples=5)
    assert before >= 0.8
    assert after <= 0.7
    assert before - after >= 0.2
    assert stable_before == stable_after


# --- vision: images drawn by generate.py, answers re-read from the pixels ----------------------

def _vision_generator() -> ModuleType:
    path = SHIPPED_SUITES_DIR / "vision" / "generate.py"
    spec = importlib.util.spec_from_file_location("vision_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """RGB rows of a PNG whose rows all use filter 0 (what generate.py writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8:10] == b"\x08\x02"  # 8-bit RGB
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 3 * width
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(r[0] == 0 for r in rows)
    return width, height, [r[1:] for r in rows]


def test_vision_files_are_what_the_generator_draws() -> None:
    assert _vision_generator().check() == []


def test_vision_answers_read_back_from_the_pixels(suites: dict[str, Suite]) -> None:
    images = SHIPPED_SUITES_DIR / "vision" / "images"
    by_id = {c.id: c for c in suites["vision"].cases}

    def dots(name: str) -> int:
        # Count the dark runs along the middle row: one per dot.
        width, height, rows = _pixels((images / name).read_bytes())
        middle = rows[height // 2]
        dark = [middle[3 * x] < 100 for x in range(width)]
        return sum(1 for x in range(width) if dark[x] and (x == 0 or not dark[x - 1]))

    assert by_id["vision-008"].ideals == [str(dots("dots-5.png"))] == ["5"]
    counts = [dots(f"dots-{n}.png") for n in (5, 3, 8)]
    assert by_id["vision-009"].ideals == [("first", "second", "third")[counts.index(max(counts))]]
    # The tallest bar: the column whose coloured top is highest; its colour names the answer.
    width, _, rows = _pixels((images / "bars.png").read_bytes())
    colours = {(220, 30, 30): "red", (30, 160, 60): "green", (30, 80, 220): "blue",
               (240, 140, 20): "orange"}
    tops: dict[str, int] = {}
    for y, row in enumerate(rows):
        for x in range(width):
            name = colours.get(tuple(row[3 * x:3 * x + 3]))
            if name is not None:
                tops.setdefault(name, y)
    assert len(tops) == 4
    assert by_id["vision-001"].ideals == [min(tops, key=tops.__getitem__)]
    assert by_id["vision-010"].has_images and all(c.has_images for c in by_id.values())


def test_vision_worked_examples_pass_and_fake_wrong_answers_fail(suites: dict[str, Suite]
                                                                 ) -> None:
    suite = suites["vision"]
    config = resolve_config(suite, as_of=datetime(2026, 11, 9, 6, tzinfo=UTC), run_id="v")
    # Without the ideal, the fake model can only say what it saw: never a right answer.
    blind = [Case(**{**c.__dict__, "ideal": None}) for c in suite.cases]

    async def check() -> tuple[list[str], list[str]]:
        rows = await run_cells(suite, "fake/stable", blind, config, ProviderRegistry())
        wrong = {r["prompt_id"]: r["output"] for r in rows}
        assert len(wrong) == len(suite.cases) and all("I see a " in w for w in wrong.values())
        bad = [f"{c.id}: {(await score(c.metadata['example_pass'], c)).reason}"
               for c in suite.cases if (await score(c.metadata["example_pass"], c)).passed
               is not True]
        lucky = [f"{c.id} passes {wrong[c.id]!r}" for c in suite.cases
                 if (await score(wrong[c.id], c)).passed]
        return bad, lucky

    assert asyncio.run(check()) == ([], [])


def test_fake_drifting_pass_rate_drops_on_vision_too(suites: dict[str, Suite]) -> None:
    before, after = _pass_rates(suites["vision"], "fake/drifting@2026-11-10", [9, 10],
                                samples=10)
    assert before >= 0.8 and after <= 0.7
