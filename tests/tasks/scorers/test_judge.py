"""llm_judge: a separate judge model, reached through the provider registry.

The judge here is a provider object handed to ``ProviderRegistry(instances=...)``, the same seam
a real provider's mock transport uses; it answers what a real judge might.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tasks.providers.base import Completion, CompletionRequest
from tasks.providers.registry import ProviderRegistry
from tasks.scorers import ScoreContext, ScoreResult, score, validate_assertion
from tasks.scorers.judge import JUDGE_ENV, parse_verdict
from tasks.suites.model import Case


class ScriptedJudge:
    """A judge provider that answers with fixed text, an error, or an exception."""

    name = "judge"

    def __init__(self, text: str | None = None, error: str | None = None,
                 raises: Exception | None = None) -> None:
        self.text, self.error, self.raises = text, error, raises
        self.calls: list[tuple[str, CompletionRequest]] = []

    async def complete(self, model: str, request: CompletionRequest) -> Completion:
        self.calls.append((model, request))
        if self.raises is not None:
            raise self.raises
        return Completion(self.text, error=self.error)

    async def aclose(self) -> None:
        return None


def case(**options: Any) -> Case:
    assertion = {"type": "llm_judge", "rubric": "Is it a haiku (5-7-5)?",
                 "judge_model": "judge/grader-1", **options}
    return Case(id="haiku-1", input="Write a haiku about rain.", assertion=assertion)


def run(output: str, c: Case, judge: ScriptedJudge | None = None,
        model_id: str = "openai/model-under-test", **extras: Any) -> ScoreResult:
    if judge is not None:
        extras["registry"] = ProviderRegistry(instances={"judge": judge})
    return asyncio.run(score(output, c, ScoreContext(model_id=model_id, extras=extras)))


HAIKU = "Soft rain on the roof\nthe gutters hum a low song\nnight keeps the rhythm"


def test_judge_score_decides_and_the_judge_sees_rubric_and_output() -> None:
    judge = ScriptedJudge('{"score": 8, "verdict": "pass", "reason": "valid haiku"}')
    result = run(HAIKU, case(), judge)
    assert result.passed is True
    assert result.score == pytest.approx(0.8)
    assert "judge/grader-1" in result.reason
    model, request = judge.calls[0]
    prompt = request.messages[-1]["content"]
    assert model == "grader-1"
    assert "Is it a haiku (5-7-5)?" in prompt and "gutters hum" in prompt
    assert request.temperature == 0.0


def test_threshold_applies_to_the_score() -> None:
    judge = ScriptedJudge('{"score": 6, "verdict": "pass"}')
    result = run(HAIKU, case(threshold=0.7), judge)
    assert result.passed is False
    assert "the score decides" in result.reason


@pytest.mark.parametrize(("reply", "passed", "value"), [
    ("```json\n{\"verdict\": \"fail\", \"reason\": \"4 lines\"}\n```", False, 0.0),
    ("The poem has the right shape.\nScore: 3/10", False, 0.3),
    ("Rating: [[9]]", True, 0.9),
    ("VERDICT: PASS", True, 1.0),
])
def test_verdicts_are_read_from_varied_replies(reply: str, passed: bool, value: float) -> None:
    result = run(HAIKU, case(), ScriptedJudge(reply))
    assert result.passed is passed
    assert result.score == pytest.approx(value)


@pytest.mark.parametrize("reply", [
    "I think it is quite nice.",
    "It could PASS as a haiku but might FAIL on syllables.",
    '{"score": 42}',
    "",
])
def test_unreadable_verdict_is_skipped_not_guessed(reply: str) -> None:
    result = run(HAIKU, case(), ScriptedJudge(reply))
    assert result.skipped
    assert "could not read a verdict" in result.reason


def test_judge_error_is_skipped_with_the_reason() -> None:
    result = run(HAIKU, case(), ScriptedJudge(error="HTTP 529: overloaded"))
    assert result.skipped
    assert "HTTP 529: overloaded" in result.reason
    assert result.score is None


def test_judge_exception_is_skipped_with_the_reason() -> None:
    result = run(HAIKU, case(), ScriptedJudge(raises=TimeoutError("read timed out")))
    assert result.skipped
    assert "TimeoutError" in result.reason and "read timed out" in result.reason


def test_unknown_judge_provider_is_skipped() -> None:
    result = run(HAIKU, case(judge_model="nowhere/judge"), None)
    assert result.skipped and "nowhere" in result.reason


def test_no_judge_configured_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JUDGE_ENV, raising=False)
    c = Case(id="h", input="q", assertion={"type": "llm_judge", "rubric": "ok?"})
    result = run(HAIKU, c)
    assert result.skipped and JUDGE_ENV in result.reason


def test_judge_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(JUDGE_ENV, "judge/from-env")
    judge = ScriptedJudge('{"verdict": "pass"}')
    c = Case(id="h", input="q", assertion={"type": "llm_judge", "rubric": "ok?"})
    assert run(HAIKU, c, judge).passed is True
    assert judge.calls[0][0] == "from-env"


def test_never_silently_the_model_under_test() -> None:
    judge = ScriptedJudge('{"score": 10}')
    result = run(HAIKU, case(), judge, model_id="judge/grader-1")
    assert result.skipped and "model under test" in result.reason
    assert judge.calls == []
    allowed = run(HAIKU, case(allow_self_judge=True), judge, model_id="judge/grader-1")
    assert allowed.passed is True


def test_pramana_judge_prompt_is_accepted() -> None:
    c = Case(id="p", input="Write a haiku.", assertion={
        "type": "llm_judge", "judge_prompt": "Is this a haiku?", "judge_model": "judge/g"})
    assert validate_assertion(c) == []
    judge = ScriptedJudge('{"verdict": "fail"}')
    assert run(HAIKU, c, judge).passed is False
    assert "Is this a haiku?" in judge.calls[0][1].messages[-1]["content"]


def test_the_offline_fake_model_as_judge_gives_no_verdict() -> None:
    # The fake provider knows no answer to a grading prompt: an honest skip, not a pass.
    result = run(HAIKU, case(judge_model="fake/stable"), None)
    assert result.skipped and "could not read a verdict" in result.reason


@pytest.mark.parametrize(("assertion", "field"), [
    ({"type": "llm_judge"}, "assertion.rubric"),
    ({"type": "llm_judge", "rubric": "ok?", "judge_model": "gpt-4o"}, "assertion.judge_model"),
    ({"type": "llm_judge", "rubric": "ok?", "threshold": 7}, "assertion.threshold"),
    ({"type": "not-llm_judge", "rubric": "ok?"}, "assertion.type"),
])
def test_judge_setup_problems(assertion: dict[str, Any], field: str) -> None:
    c = Case(id="j", input="q", assertion=assertion)
    assert field in [f for f, _ in validate_assertion(c)]


def test_parse_verdict_on_json_with_upper_case_keys() -> None:
    assert parse_verdict('{"Verdict": "PASS", "Score": 7}') == (True, pytest.approx(0.7))
    assert parse_verdict("no idea") == (None, None)
