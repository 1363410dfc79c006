"""From a validated submission to a spool entry: the server-side hash and the dedupe identity.

Dedupe identity (see docs/api.md): the same *result* submitted again by the same user is a
duplicate; the same *output* produced by another run is not (repeated outputs are exactly the
signal drift detection counts). A result is identified by

    user_id | output_hash (model_id|prompt_id|output) | suite_hash | timestamp (µs, UTC)
            | run_id | sample_idx

The timestamp is the client's record of when the result was produced, so re-sending a results file
repeats it, while a new run (even with byte-identical output) has a new one. Without a timestamp the
server's clock is used and the result can never be a duplicate.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from api.schemas import SubmitRequest
from api.spool import SpoolEntry
from tasks.identity import SOURCE_COMMUNITY
from tasks.records.schema import make_record, output_hash

DEFAULT_RUN_ID = "community"
DEDUPE_VERSION = "v1"


class HashMismatchError(ValueError):
    """The client's ``result_hash`` is not the hash of the fields it sent."""

    def __init__(self, sent: str, expected: str) -> None:
        self.sent = sent
        self.expected = expected
        super().__init__(
            f"result_hash {sent} does not match sha256(model_id|prompt_id|output) = {expected}"
        )


def _normalize_hash(value: str) -> str:
    return value if value.startswith("sha256:") else f"sha256:{value}"


def dedupe_key(user_id: str, req: SubmitRequest, out_hash: str, ts: datetime) -> str:
    ident = "|".join([
        DEDUPE_VERSION, user_id, out_hash, req.suite_hash or "",
        ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"), req.run_id or DEFAULT_RUN_ID,
        str(req.sample_idx),
    ])
    return hashlib.sha256(ident.encode()).hexdigest()


def build_entry(req: SubmitRequest, user_id: str, *, now: datetime | None = None) -> SpoolEntry:
    """The record to store for one submission, and its dedupe key.

    Raises ``HashMismatchError`` when ``result_hash`` was sent and is not the server's hash.
    """
    out_hash = output_hash(req.model_id, req.prompt_id, req.output)
    if req.result_hash is not None and _normalize_hash(req.result_hash) != out_hash:
        raise HashMismatchError(req.result_hash, out_hash)
    ts = req.timestamp or now or datetime.now(UTC)
    assertion = req.assertion_result
    metadata = {
        k: v for k, v in {
            "runner_version": req.runner_version,
            "assertion_details": assertion.details if assertion else None,
        }.items() if v is not None
    }
    record = make_record(
        timestamp=ts,
        user_id=user_id,
        model_id=req.model_id,
        prompt_id=req.prompt_id,
        output=req.output,
        output_hash=out_hash,
        metadata_json=json.dumps(metadata, separators=(",", ":")) if metadata else None,
        run_id=req.run_id or DEFAULT_RUN_ID,
        source=SOURCE_COMMUNITY,
        suite=req.suite,
        suite_version=req.suite_version,
        suite_hash=req.suite_hash,
        category=req.category,
        sample_idx=req.sample_idx,
        temperature=req.temperature,
        seed=req.seed,
        passed=assertion.passed if assertion else None,
        score=req.score,
        assertion_type=req.assertion_type,
        latency_ms=req.latency_ms,
        input_tokens=req.input_tokens,
        output_tokens=req.output_tokens,
        cost_usd=req.cost_usd,
        error=req.error,
    )
    return SpoolEntry(dedupe_key(user_id, req, out_hash, ts), record)
