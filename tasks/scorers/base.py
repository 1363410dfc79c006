"""The scorer registry and the one entry point, ``score()``, that every caller uses."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.suites.model import Case

NEGATION_PREFIX = "not-"
# Options every assertion may carry, whatever its scorer.
_COMMON_OPTIONS = frozenset({"type"})


@dataclass(frozen=True)
class ScoreResult:
    """``passed`` and ``score`` are None when the scorer could not decide (``skipped``)."""

    passed: bool | None
    score: float | None
    reason: str

    @property
    def skipped(self) -> bool:
        return self.passed is None

    @classmethod
    def ok(cls, passed: bool, reason: str, score: float | None = None) -> ScoreResult:
        return cls(passed, float(passed) if score is None else score, reason)

    @classmethod
    def skip(cls, reason: str) -> ScoreResult:
        return cls(None, None, f"skipped: {reason}")


@dataclass
class ScoreContext:
    """What a scorer may need beyond the output and the case (a judge model, limits, ...).

    ``model_id`` is the model under test, so a judge can refuse to be it unless asked.
    """

    model_id: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


ScorerFn = Callable[[str, "Case", dict[str, Any], ScoreContext],
                    "ScoreResult | Awaitable[ScoreResult]"]
# Load-time check of a case's options: (field, message) pairs, empty when they are usable.
OptionCheck = Callable[["Case", dict[str, Any]], list[tuple[str, str]]]


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    description: str
    fn: ScorerFn
    needs_ideal: bool = False
    options: frozenset[str] = frozenset()
    negatable: bool = True
    check: OptionCheck | None = None


_REGISTRY: dict[str, ScorerSpec] = {}


def scorer(
    name: str,
    *,
    description: str,
    needs_ideal: bool = False,
    options: tuple[str, ...] = (),
    negatable: bool = True,
    check: OptionCheck | None = None,
) -> Callable[[ScorerFn], ScorerFn]:
    """Register ``fn(output, case, options, ctx) -> ScoreResult`` (sync or async) under ``name``.

    ``check`` validates a case's options when the suite loads, so a bad option is a located
    suite problem instead of a skipped score at run time.
    """

    def register(fn: ScorerFn) -> ScorerFn:
        if name in _REGISTRY:
            raise ValueError(f"scorer {name!r} is registered twice")
        if not description.strip():
            raise ValueError(f"scorer {name!r} needs a description")
        _REGISTRY[name] = ScorerSpec(
            name, description, fn, needs_ideal, frozenset(options), negatable, check
        )
        return fn

    return register


def registered() -> dict[str, ScorerSpec]:
    return dict(sorted(_REGISTRY.items()))


def _split(assertion_type: str) -> tuple[str, bool]:
    if assertion_type.startswith(NEGATION_PREFIX):
        return assertion_type[len(NEGATION_PREFIX):], True
    return assertion_type, False


def get_scorer(assertion_type: str) -> ScorerSpec | None:
    name, _ = _split(assertion_type)
    return _REGISTRY.get(name)


def validate_assertion(case: Case) -> list[tuple[str, str]]:
    """Problems with a case's assertion as (field, message) pairs; empty when it can be scored."""
    problems: list[tuple[str, str]] = []
    name, negated = _split(case.assertion_type)
    spec = _REGISTRY.get(name)
    if spec is None:
        known = ", ".join(sorted(_REGISTRY))
        return [("assertion.type", f"unknown assertion type {case.assertion_type!r} "
                                   f"(known: {known})")]
    if negated and not spec.negatable:
        problems.append(("assertion.type", f"{name!r} cannot be negated"))
    if spec.needs_ideal and not case.ideals:
        problems.append(("ideal", f"required by assertion type {name!r}"))
    for key in case.assertion:
        if key not in spec.options and key not in _COMMON_OPTIONS:
            allowed = ", ".join(sorted(spec.options)) or "none"
            problems.append((f"assertion.{key}",
                             f"unknown option for {name!r} (allowed: {allowed})"))
    if spec.check is not None:
        options = {k: v for k, v in case.assertion.items() if k != "type"}
        try:
            problems.extend(spec.check(case, options))
        except Exception as exc:  # a checker bug is reported, never a crash of the loader
            problems.append(("assertion", f"could not check options: {type(exc).__name__}: {exc}"))
    return problems


# --- option checks shared by the scorer modules ------------------------------------------------

def check_bool(options: dict[str, Any], *names: str) -> list[tuple[str, str]]:
    """Each named option, when present, must be true or false."""
    return [(f"assertion.{n}", "must be true or false")
            for n in names if n in options and not isinstance(options[n], bool)]


def check_number(
    options: dict[str, Any], name: str, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, integer: bool = False,
) -> list[tuple[str, str]]:
    """The option, when present, must be a number within [low, high] (``low_open``: > low)."""
    if name not in options:
        return []
    value = options[name]
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return [(f"assertion.{name}", f"must be {kind}")]
    if low is not None and (value <= low if low_open else value < low):
        return [(f"assertion.{name}", f"must be {kind} {'>' if low_open else '>='} {low:g}")]
    if high is not None and value > high:
        return [(f"assertion.{name}", f"must be {kind} <= {high:g}")]
    return []


def check_threshold(options: dict[str, Any]) -> list[tuple[str, str]]:
    return check_number(options, "threshold", low=0.0, high=1.0)


def check_nonempty_ideals(case: Case) -> list[tuple[str, str]]:
    """An empty ideal string would match every output, so it is never what the author meant."""
    return [("ideal", f"ideal[{i}] is empty: it would match any output")
            for i, ideal in enumerate(case.ideals) if not ideal.strip()]


async def score(output: str | None, case: Case, ctx: ScoreContext | None = None) -> ScoreResult:
    """Score one output against its case. Never raises for a scorer's own failure: it skips."""
    ctx = ctx or ScoreContext()
    name, negated = _split(case.assertion_type)
    spec = _REGISTRY.get(name)
    if spec is None:
        return ScoreResult.skip(f"unknown assertion type {case.assertion_type!r}")
    if output is None:
        return ScoreResult.skip("no output to score")
    if spec.needs_ideal and not case.ideals:
        return ScoreResult.skip(f"{name} needs an ideal answer and the case has none")
    options = {k: v for k, v in case.assertion.items() if k != "type"}
    try:
        result = spec.fn(output, case, options, ctx)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # a scorer bug must not lose the row
        return ScoreResult.skip(f"{name} failed: {type(exc).__name__}: {exc}")
    if not result.skipped and (result.score is None or not 0.0 <= result.score <= 1.0):
        # NaN fails the range check too; a bad number must not reach the aggregates.
        return ScoreResult.skip(f"{name} returned an invalid score {result.score!r}")
    if negated and not result.skipped:
        return ScoreResult(
            not result.passed,
            None if result.score is None else 1.0 - result.score,
            f"not ({result.reason})",
        )
    return result
