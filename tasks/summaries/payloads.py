"""The shapes of the published summaries (``summaries/latest/*.json``), defined once: the nightly
dumps them, the read API declares them in ``/openapi.json``, the CLI and the dashboard read them.

Field names are the wire format: the dashboard's JavaScript reads them as they are spelled here.
Fields added later have defaults, so a file written by an older nightly still reads; the fields
a model always had keep their meaning: the verdict and figures of the project's own runs, never
of community submissions (those sit beside them, labelled ``evidence: "community"``).

Longer than 400 lines: it is the wire format of every published file, each field described for
``/openapi.json``; one module keeps the shapes that reference each other side by side.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from tasks.errors import PlumblineError

# The file each payload is published as, under ``summaries/latest/``.
CHART = "chart.json"
MODELS = "models.json"
DRIFT = "drift.json"
NIGHTLY_STATUS = "nightly.json"

# Written with ``datetime.isoformat()`` ("+00:00"), which pydantic's own JSON form ("Z") is not:
# the files keep the spelling they always had.
Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Verdict = Literal["stable", "watch", "drifting", "insufficient_data"]
ConsistencyBand = Literal["stable", "watch", "drifting"]
Evidence = Literal["project", "community"]


class _Payload(BaseModel):
    # Every field of these payloads is known: a field that publish adds without declaring it
    # here fails the tests instead of reaching readers undocumented.
    model_config = ConfigDict(extra="forbid")


# --- chart.json -------------------------------------------------------------------------------

class ChartDay(BaseModel):
    """One day of the chart: its date, then one key per model with that day's row count."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"date": "2026-11-20", "openai/gpt-4o": 120}]},
    )
    # The per-model counts are keyed by model id, so they are typed extras, not fields.
    __pydantic_extra__: dict[str, int] = Field(init=False)

    date: dt.date = Field(description="The UTC day.")


class ChartPayload(_Payload):
    """``chart.json``, the seed's chart: submissions per day per model."""

    data: list[ChartDay] = Field(
        description="One entry per day with rows, oldest first; a model without rows that day "
        "has no key.")
    models: list[str] = Field(description="Every model id that appears in ``data``, sorted.")
    total_submissions: int = Field(description="Rows over every day and model.")


# --- shared by models.json and drift.json ------------------------------------------------------

class DriftWindow(_Payload):
    """The two windows the night compared: a recent one and the baseline just before it."""

    as_of: dt.date = Field(description="Last day of the recent window.")
    recent_days: int = Field(description="Length of the recent window in days.")
    baseline_days: int = Field(description="Length of the baseline window in days.")
    recent_start: dt.date = Field(description="First day of the recent window.")
    baseline_start: dt.date = Field(description="First day of the baseline window.")
    baseline_end: dt.date = Field(description="Last day of the baseline window.")


# --- models.json ------------------------------------------------------------------------------

# The verdict figures of one kind of evidence, spelled once for the model and its community part.
RowsRecent = Annotated[int, Field(description="Rows in the recent window.")]
RowsBaseline = Annotated[int, Field(description="Rows in the baseline window.")]
PassRateRecent = Annotated[float | None, Field(
    description="Passes over scored rows in the recent window; null when nothing was scored.")]
PassRateBaseline = Annotated[float | None, Field(
    description="Passes over scored rows in the baseline window; null when nothing was scored.")]
Consistency = Annotated[float | None, Field(
    description="Share of prompts whose set of outputs did not change from the previous day, on "
    "the recent window's worst day; null without two consecutive days.")]
Band = Annotated[ConsistencyBand | None, Field(
    description="``stable`` ≥ 95 %, ``watch`` 80–95 %, ``drifting`` < 80 %.")]
VerdictField = Annotated[Verdict, Field(
    description="The night's answer to \"did this model change?\".")]
Reasons = Annotated[list[str], Field(
    description="Human-readable evidence, strongest first (at most five).")]
SignificantTests = Annotated[int, Field(
    description="Tests significant after Benjamini–Hochberg (within this evidence's own tests).")]
Suites = Annotated[list[str], Field(description="Suites with rows in either window, sorted.")]


class SuiteFigures(_Payload):
    """One suite's plain figures over the recent window, for comparing the models that ran it
    (the dashboard's compare view). Descriptive: no test, no part of the verdict."""

    suite: str
    rows_recent: int = Field(description="Rows of this suite in the recent window.")
    pass_rate_recent: float | None = Field(
        description="Passes over scored rows of this suite; null when nothing was scored.")
    latency_p50_ms: float | None = Field(
        description="Median latency of this suite's answered calls; null without any.")
    cost_usd_recent: float | None = Field(
        description="Cost of this suite's recent rows in USD; null when any row's cost is "
        "unknown. Per call: ``cost_usd_recent / rows_recent``.")


SuiteFiguresField = Annotated[list[SuiteFigures], Field(
    default_factory=list,
    description="Per suite (sorted), the recent window's figures; empty in older files.")]


class CommunitySummary(_Payload):
    """A model's verdict from community submissions alone: its own tests and Benjamini–Hochberg
    family, each contributor capped per model and day. Never part of the model's ``verdict``."""

    evidence: Literal["community"] = Field(
        "community", description="Which rows this verdict comes from: community submissions.")
    rows_recent: RowsRecent
    rows_baseline: RowsBaseline
    pass_rate_recent: PassRateRecent
    pass_rate_baseline: PassRateBaseline
    consistency: Consistency
    consistency_band: Band
    verdict: VerdictField
    reasons: Reasons
    significant_tests: SignificantTests
    suites: Suites
    suite_figures: SuiteFiguresField


class ChangePoint(_Payload):
    """When a flagged model's change began: estimated from the daily series of the metric that
    carried its verdict (docs/drift.md, "When it started")."""

    date: dt.date = Field(description="The estimated first day of the change.")
    earliest: dt.date = Field(description="The earliest day the change could have begun.")
    latest: dt.date = Field(description="The latest day the change could have begun.")
    metric: str = Field(
        description="The metric whose daily series it was estimated from (``pass_rate``, "
        "``latency_ms``, ``output_len``, ``consistency``, …).")


class Availability(_Payload):
    """Whether the model answered at all: its error rate, tested like the pass rate but never
    part of the quality ``verdict`` (failed calls are not evidence about answers)."""

    status: Literal["ok", "degraded", "insufficient_data"] = Field(
        description="``degraded``: the error rate rose significantly (a verdict-grade error-rate "
        "test); ``insufficient_data``: too few calls in a window.")
    error_rate_recent: float | None = Field(
        description="Failed calls over all calls in the recent window; null without calls.")
    error_rate_baseline: float | None = Field(
        description="Failed calls over all calls in the baseline window; null without calls.")
    top_error: str | None = Field(
        description="The recent window's most common error message (at most 200 characters).")
    reasons: list[str] = Field(description="Why ``degraded`` (or why no status could be given).")


class ModelSummary(_Payload):
    """One model's verdict and the figures behind it, from the project's own runs (scheduled and
    on-demand); what community submissions say is in ``community``."""

    model_id: str = Field(description="``provider/model``.", examples=["openai/gpt-4o"])
    last_seen: dt.date | None = Field(
        description="Last day with rows for this model (any evidence).")
    evidence: Literal["project"] = Field(
        "project", description="Which rows the fields below come from: the project's own runs.")
    rows_recent: RowsRecent
    rows_baseline: RowsBaseline
    pass_rate_recent: PassRateRecent
    pass_rate_baseline: PassRateBaseline
    consistency: Consistency
    consistency_band: Band
    verdict: VerdictField
    reasons: Reasons
    significant_tests: SignificantTests
    suites: Suites
    suite_figures: SuiteFiguresField
    community: CommunitySummary | None = Field(
        None, description="The community's own verdict; null without counted community rows.")
    change_point: ChangePoint | None = Field(
        None, description="When the change began (``watch`` and ``drifting`` models); null "
        "otherwise, or when the series could not date it.")
    evidence_url: str | None = Field(
        None, description="``/api/models/{model_id}/evidence``: before/after answers of the "
        "prompts with the strongest evidence; null when none was published.",
        examples=["/api/models/openai/gpt-4o/evidence"])
    availability: Availability | None = Field(
        None, description="The model's error rate and whether it degraded (beside the verdict, "
        "never part of it); null in older files or without rows in the windows.")


class EvidenceRulesSummary(_Payload):
    """Which rows the night counted, and as what (docs/drift.md, "Evidence")."""

    verdict_evidence: Literal["project"] = Field(
        "project", description="The evidence a model's ``verdict`` comes from.")
    project_sources: list[str] = Field(
        description="Row sources that are the project's own runs.")
    community_cap_per_user_day: int = Field(
        description="Community rows one contributor counts per model and day "
        "(``COMMUNITY_CAP_PER_USER_DAY``).")
    community_anonymous_counted: bool = Field(
        description="Whether anonymous community rows count (``COMMUNITY_ALLOW_ANONYMOUS``), "
        "all together as one contributor.")


class ModelsPayload(_Payload):
    """``models.json``: a verdict per model, models seen before the windows included."""

    generated_at: Timestamp = Field(description="When the nightly flow wrote this file.")
    window: DriftWindow
    models: list[ModelSummary] = Field(description="Sorted by model id.")
    evidence_rules: EvidenceRulesSummary | None = Field(
        None, description="The rules the night counted rows by; null in older files.")


# --- drift.json -------------------------------------------------------------------------------

class DriftSettings(_Payload):
    """The thresholds the night's tests were judged by."""

    alpha: float = Field(description="False discovery rate of Benjamini–Hochberg.")
    min_cliffs_delta: float = Field(
        description="Smallest |Cliff's delta| a distribution shift must reach to count.")
    min_rate_difference: float = Field(
        description="Smallest pass-rate difference that counts.")
    min_consistency_drop: float = Field(description="Smallest consistency drop that counts.")
    min_semantic_score: float | None = Field(
        None, description="Smallest standard score of the worst recent day's meaning distance "
        "that counts; null in older files.")
    level_shares: list[float] = Field(
        min_length=3, max_length=3,
        description="Share of the false-discovery budget of the model, suite and prompt levels.")


class DriftTest(_Payload):
    """One statistical test of the night, for one model, suite or prompt."""

    evidence: Evidence = Field(
        "project", description="The rows tested: the project's own runs, or community "
        "submissions (each kind is its own Benjamini–Hochberg family).")
    model_id: str
    suite: str | None = Field(description="Null for a model-level test.")
    prompt_id: str | None = Field(description="Null for a model- or suite-level test.")
    level: Literal["model", "suite", "prompt"]
    metric: Literal["pass_rate", "score", "latency_ms", "output_len", "consistency",
                    "error_rate", "refusal_rate", "semantic"] = Field(
        description="``error_rate`` is availability (never part of the verdict); the others are "
        "quality.")
    test: Literal["fisher", "chi2", "mannwhitneyu", "consistency", "worst_day_t"] = Field(
        description="Fisher's exact or chi-square (pass, error and refusal rates), Mann–Whitney "
        "U (score, latency, output length), hypergeometric (consistency), Student-t prediction "
        "interval of the worst recent day (semantic).")
    statistic: float | None = Field(
        description="Odds ratio (fisher), chi-square, U of the recent window, the recent "
        "consistency, or t (semantic); null when not finite.")
    p_value: float | None = Field(description="Raw p-value; null when not testable.")
    p_adjusted: float | None = Field(description="Weighted Benjamini–Hochberg adjusted p-value.")
    effect_size: float | None = Field(description="In the unit of ``effect_measure``.")
    effect_measure: Literal["rate_difference", "cliffs_delta", "consistency_drop",
                            "standard_score"]
    min_effect: float | None = Field(description="The effect size this test must reach to count.")
    n_recent: int = Field(description="Observations in the recent window.")
    n_baseline: int = Field(description="Observations in the baseline window.")
    recent_value: float | None = Field(
        description="Rate, median or consistency in the recent window; for semantic, the mean "
        "distance to the baseline's answers on the worst recent day.")
    baseline_value: float | None = Field(
        description="Rate, median or consistency in the baseline window; for semantic, the "
        "baseline days' mean distance (each to the other baseline days' answers).")
    ci_recent: list[float] | None = Field(
        description="Wilson 95 % interval of the recent pass rate (pass_rate tests only).")
    consistency_band: ConsistencyBand | None = Field(
        description="Band of the recent consistency (consistency tests only).")
    bh_weight: float = Field(description="This test's weight in the weighted BH procedure.")
    significant: bool = Field(
        description="Adjusted p below alpha and the effect at least ``min_effect``.")


class SemanticStatus(_Payload):
    """Whether the night's ``semantic`` (meaning drift) metric ran, and if not, why."""

    status: Literal["ran", "skipped"]
    reason: str | None = Field(
        description="Why it was skipped (e.g. the ``embeddings`` extra is not installed).")
    encoder: str | None = Field(description="The embedding model the distances come from.")
    embedded: int = Field(description="Distinct outputs embedded this night (new ones).")
    reused: int = Field(description="Vectors taken from the cache instead of embedding again.")


class DriftPayload(_Payload):
    """``drift.json``: every test of the night (a night can hold 100k)."""

    generated_at: Timestamp = Field(description="When the nightly flow wrote this file.")
    window: DriftWindow
    config: DriftSettings
    semantic: SemanticStatus | None = Field(
        None, description="The meaning-drift metric: ran, or skipped and why; null in older "
        "files.")
    tests: list[DriftTest] = Field(
        description="The tests of the project's own runs (the verdicts' evidence): model-level "
        "first, then suite, then prompt; each by model, suite, prompt and metric.")
    community_tests: list[DriftTest] = Field(
        default_factory=list,
        description="The tests of community submissions, in the same order; their own family.")


# --- model-history/{slug}.json ----------------------------------------------------------------

class HistoryDay(_Payload):
    """One model's figures on one day, from one kind of evidence."""

    date: dt.date
    evidence: Evidence = Field("project", description="Which rows the figures come from.")
    rows: int
    errors: int = Field(0, description="Rows whose call failed.")
    error_rate: float | None = Field(None, description="``errors / rows``; null without rows.")
    refusal_rate: float | None = Field(
        None, description="Refusals (tasks/refusal.py) over answered rows; null without answered "
        "rows or in summaries from before the refusal count.")
    pass_rate: float | None = Field(description="Passes over scored rows; null if none scored.")
    score_mean: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    distinct_outputs: int = Field(description="Distinct outputs, summed over prompts.")
    output_len_mean: float | None
    cost_usd: float | None = Field(description="Null when any row's cost is unknown.")
    consistency: float | None = Field(
        description="Share of prompts with the same outputs as the previous day; null without "
        "a previous day.")


class HistoryPayload(_Payload):
    """``model-history/{slug}.json``: one model's days, oldest first (the last 90 days)."""

    model_id: str
    days: list[HistoryDay] = Field(description="From the project's own runs.")
    community_days: list[HistoryDay] = Field(
        default_factory=list, description="From community submissions that count.")


# --- model-evidence/{slug}.json ---------------------------------------------------------------

class Answer(_Payload):
    """The most common answer of one prompt in one window, as its most recent row gave it."""

    output: str = Field(description="The output (long ones truncated, with a marker saying so).")
    passed: bool | None = Field(description="Its pass result; null when not scored.")
    score: float | None
    latency_ms: float | None
    date: dt.date = Field(description="The last day of the window it was seen.")
    count: int = Field(ge=1, description="How many times this output was seen in the window.")


class DiffOp(_Payload):
    """One run of a word-level diff from the baseline answer to the recent one."""

    op: Literal["equal", "delete", "insert"]
    text: str = Field(description="The words (and the whitespace between them).")


class PromptEvidence(_Payload):
    """One prompt's baseline and recent answers and the diff between them."""

    prompt_id: str
    suite: str | None
    metric: str = Field(description="The metric of this prompt's strongest test.")
    p_adjusted: float | None = Field(description="That test's adjusted p-value.")
    baseline: Answer
    recent: Answer
    diff: list[DiffOp] = Field(
        description="Baseline → recent: ``equal`` + ``delete`` runs spell the baseline output, "
        "``equal`` + ``insert`` runs the recent one.")


class ModelEvidencePayload(_Payload):
    """``model-evidence/{slug}.json``: before and after, for a model on ``watch`` or
    ``drifting``: the prompts with the strongest evidence (smallest adjusted p-value first)."""

    model_id: str
    generated_at: Timestamp = Field(description="When the nightly flow wrote this file.")
    window: DriftWindow
    prompts: list[PromptEvidence]


# --- nightly.json -----------------------------------------------------------------------------

class ProviderCalls(BaseModel):
    """One provider's rows in the recent window, and how many of them failed."""

    model_config = ConfigDict(extra="allow")

    rows: int = Field(ge=0, description="Rows (calls) in the recent window.")
    errors: int = Field(ge=0, description="Rows whose call failed (``error`` set).")


class NightlyStatus(BaseModel):
    """``nightly.json``: when the nightly flow last finished and what it did.

    The counts (every field but ``finished_at``) are optional: a file written by an older nightly
    still parses. ``/metrics`` exposes them as gauges (docs/api.md#metrics).
    """

    # Read by /api/health, which may run a version behind or ahead of the nightly worker: a
    # field it does not know is not an error.
    model_config = ConfigDict(extra="allow")

    finished_at: Timestamp
    days: int | None = Field(None, description="Days of raw data in the store.")
    aggregated_days: int | None = Field(None, description="Days (re)aggregated this night.")
    summary_rows: int | None = Field(None, description="Daily summary rows written.")
    as_of: dt.date | None = Field(
        None, description="Last day of the drift windows; null without data.")
    drifting: list[str] = Field(
        default_factory=list, description="Models with a ``drifting`` verdict.")
    community_drifting: list[str] = Field(
        default_factory=list,
        description="Models whose community evidence alone says ``drifting`` (not notified).")
    degraded: list[str] = Field(
        default_factory=list,
        description="Models whose availability is ``degraded`` (their error rate rose).")
    rows_aggregated: int | None = Field(
        None, description="Raw rows in the days (re)aggregated this night.")
    tests: int | None = Field(None, description="Drift tests run this night.")
    # Keyed by plain strings, not ``Verdict``: an API a version behind must still read a file
    # that names a verdict it does not know (/api/health parses this file too).
    verdicts: dict[str, int] | None = Field(
        None, description="Models per verdict, as in ``models.json``.")
    provider_calls: dict[str, ProviderCalls] | None = Field(
        None, description="Per provider (the ``provider`` of ``provider/model``): rows and "
        "failed calls in the recent window; the provider error rate is ``errors / rows``.")


P = TypeVar("P", bound=BaseModel)


def parse_summary(model: type[P], data: bytes, source: str) -> P:
    """A summary file's bytes as ``model``; a file that does not match says which and where."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'the file'}: {e['msg']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise PlumblineError(
            f"{source} is not a valid {model.__name__}: {problems}{more}") from None
