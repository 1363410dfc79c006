"""Request and response models of the API (requests are validated field by field: a bad field is
a 422 that names it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tasks.storage.layout import model_slug

MAX_OUTPUT_CHARS = 100_000
MAX_ID_CHARS = 200
MAX_BATCH = 500

# Path-safe ids: segments of letters, digits and ._:@+- joined by single "/". No "..", no empty
# or absolute segments, no backslashes or control characters: an id never becomes a path it
# should not, wherever a later version decides to use it.
# Every pattern is applied with fullmatch: with re.match, "^...$" also accepts a trailing newline
# ("$" matches before a final "\n"), and "p1\n" would be stored as a prompt id of its own.
_ID_RE = re.compile(r"[A-Za-z0-9._:@+-]+(?:/[A-Za-z0-9._:@+-]+)*")
_HASH_RE = re.compile(r"(?:sha256:)?[0-9a-f]{64}")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces


def _json_pattern(regex: re.Pattern[str]) -> dict[str, str]:
    # For /openapi.json: JSON Schema patterns are ECMA-262, where "$" (without the m flag) is the
    # end of the input only, so "^...$" there means exactly what fullmatch means here.
    return {"pattern": f"^(?:{regex.pattern})$"}


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"); they cannot be stored or hashed as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text (lone surrogate found)") from exc
    return value


def _safe_id(value: str) -> str:
    if not _ID_RE.fullmatch(value) or any(seg in (".", "..") for seg in value.split("/")):
        raise ValueError(
            "must be segments of letters, digits and . _ : @ + - separated by single '/' "
            "(no '..', no leading or trailing '/')"
        )
    return value


def _model_id(value: str) -> str:
    _safe_id(value)
    try:
        model_slug(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return value


def _token(value: str) -> str:
    if not _TOKEN_RE.fullmatch(value):
        raise ValueError("must be printable ASCII without spaces")
    return value


Text = Annotated[str, AfterValidator(_utf8)]
ModelId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_CHARS, examples=["openai/gpt-4o"],
               json_schema_extra=_json_pattern(_ID_RE)),
    AfterValidator(_model_id),
]
PromptId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_CHARS, examples=["cheap-001"],
               json_schema_extra=_json_pattern(_ID_RE)),
    AfterValidator(_safe_id),
]
ShortToken = Annotated[
    str, Field(min_length=1, max_length=100, json_schema_extra=_json_pattern(_TOKEN_RE)),
    AfterValidator(_token),
]


class AssertionResult(BaseModel):
    """The Pramana CLI's verdict of its own assertion."""

    model_config = ConfigDict(extra="ignore")

    passed: bool | None = None
    details: dict[str, Any] | str | None = Field(
        None, description="Free-form details from the scorer (stored in metadata_json)."
    )

    @field_validator("details")
    @classmethod
    def _details_text(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if isinstance(value, str):
            _utf8(value)
            if len(value) > MAX_OUTPUT_CHARS:
                raise ValueError(f"at most {MAX_OUTPUT_CHARS} characters")
        return value


class SubmitRequest(BaseModel):
    """One result, in the Pramana CLI's ``submit`` payload (accepted unchanged).

    Fields past the Pramana payload (``run_id``, ``sample_idx``, ``suite``, tokens, cost, error)
    are optional extras Plumbline's own CLI may send. Unknown fields are ignored.
    """

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model_id: ModelId
    prompt_id: PromptId
    output: Annotated[Text, Field(max_length=MAX_OUTPUT_CHARS)]
    score: float | None = Field(None, ge=0.0, le=1.0)
    assertion_result: AssertionResult | None = None
    latency_ms: float | None = Field(None, ge=0.0, le=86_400_000.0)
    result_hash: str | None = Field(
        None, description="sha256 of model_id|prompt_id|output; recomputed and checked.",
        examples=["sha256:" + "0" * 64], json_schema_extra=_json_pattern(_HASH_RE),
    )
    suite_hash: ShortToken | None = None
    suite_version: ShortToken | None = None
    temperature: float | None = Field(None, ge=0.0, le=10.0)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    runner_version: ShortToken | None = None
    timestamp: datetime | None = Field(
        None,
        description="When the result was produced (ISO 8601; naive means UTC). Part of the "
        "dedupe identity; the server's time when absent.",
    )
    # --- Plumbline extras ---
    run_id: PromptId | None = None
    sample_idx: int = Field(0, ge=0, le=1_000_000)
    suite: PromptId | None = None
    category: ShortToken | None = None
    assertion_type: ShortToken | None = None
    input_tokens: int | None = Field(None, ge=0, le=10**9)
    output_tokens: int | None = Field(None, ge=0, le=10**9)
    cost_usd: float | None = Field(None, ge=0.0, le=1e6)
    error: Annotated[Text, Field(max_length=10_000)] | None = None

    @field_validator("result_hash")
    @classmethod
    def _hash_shape(cls, value: str | None) -> str | None:
        if value is not None and not _HASH_RE.fullmatch(value):
            raise ValueError("must be 'sha256:' followed by 64 lowercase hex digits")
        return value

    @field_validator("timestamp")
    @classmethod
    def _timestamp_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(UTC)
        except OverflowError as exc:
            raise ValueError("out of range") from exc
        if value.year < 2020:
            raise ValueError("must be 2020-01-01 or later")
        if value > datetime.now(UTC) + timedelta(days=1):
            raise ValueError("must not be more than a day in the future")
        return value


class BatchSubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[SubmitRequest] = Field(min_length=1, max_length=MAX_BATCH)


class SubmitResponse(BaseModel):
    status: Literal["accepted", "duplicate"]
    id: str = Field(description="The stored row's id (for a duplicate: the first submission's).")
    hash: str = Field(description="sha256 of model_id|prompt_id|output.")


class BatchSubmitResponse(BaseModel):
    accepted: int
    duplicates: int
    results: list[SubmitResponse]


class UserStatsResponse(BaseModel):
    user_id: str
    count: int = Field(description="Rows submitted, including those not yet flushed to storage.")
    models_tested: list[str]
    last_submission: datetime | None


class DeleteResponse(BaseModel):
    status: Literal["deleted", "anonymized"]
    files: int = Field(0, description="Files deleted (delete).")
    rows: int = Field(0, description="Rows moved to the anonymous partition (anonymize).")
    pending_dropped: int = Field(0, description="Unflushed submissions dropped (delete).")


class HealthResponse(BaseModel):
    """``GET /api/health``: ``degraded`` with HTTP 503 as soon as one check fails, and
    ``problems`` says which. No field ever holds a server path."""

    status: Literal["ok", "degraded"] = Field(
        description="`ok` when every check passes; `degraded` (HTTP 503) when storage cannot be "
        "read or written, the spool cannot write, or the last flush to storage failed.")
    version: str = Field(description="The Plumbline version serving this API.")
    store: str = Field(
        "", description="Which store holds the data: `local` or `b2:<bucket>` (never a path).")
    storage: str = Field(
        description="`ok`, or `error: ...` when reading the nightly status or writing and "
        "deleting a probe object under `state/health/` failed.")
    spool: str = Field(
        "ok", description="`ok`, or `error: ...` when the submission spool cannot commit a write "
        "(closed, disk full, read-only), or its last write failed.")
    last_nightly: str | None = Field(
        description="When the nightly flow last finished (ISO 8601); null before the first run.")
    pending_submissions: int | None = Field(
        None, description="Acknowledged submissions waiting in the spool for the next flush.")
    flush_error: str | None = Field(
        None, description="Why the last flush of the spool to storage failed; null once a flush "
        "succeeds or nothing is waiting.")
    problems: list[str] = Field(
        default_factory=list, description="One line per failing check; empty when `ok`.")


class ErrorResponse(BaseModel):
    detail: str
