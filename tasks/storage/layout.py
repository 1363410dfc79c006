"""Where things live in the store. Every key Plumbline writes is built here, nowhere else."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

from tasks.errors import ConfigError
from tasks.identity import SOURCES, USER_ANONYMOUS, USER_SCHEDULER
from tasks.storage.base import ObjectStore, child_folders

RAW = "raw"
SUMMARIES = "summaries"
DAILY = f"{SUMMARIES}/daily"
LATEST = f"{SUMMARIES}/latest"
STATE = "state"
RUNS = f"{STATE}/runs"
RESPONSE_CACHE = "cache/responses"

# A user id is 16 lowercase hex (the seed's NextAuth id) or one of the two service users: it is
# used as a path segment, so nothing else is allowed through. The ids are checked with fullmatch:
# "^...$" with re.match lets "0123456789abcdef\n" through ("$" matches before a final newline),
# a partition the real user's stats and delete would never see.
_USER_RE = re.compile(r"[0-9a-f]{16}|anonymous|scheduler")
# A run id becomes an object key segment: nothing that could leave its folder.
_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,159}")
# [0-9], not \d: \d also matches other scripts' digits, which int() would accept.
_RAW_DAY_RE = re.compile(r"raw/year=([0-9]{4})/month=([0-9]{2})/day=([0-9]{2})/")
_RAW_USER_RE = re.compile(r"raw/year=[0-9]{4}/month=[0-9]{2}/day=[0-9]{2}/user=([^/]+)/")


def check_user_id(user_id: str) -> str:
    """Return ``user_id`` if it is a valid partition value, else raise ``ValueError``."""
    if not _USER_RE.fullmatch(user_id):
        raise ValueError(
            f"invalid user_id {user_id!r}: expected 16 lowercase hex characters, "
            f"{USER_ANONYMOUS!r} or {USER_SCHEDULER!r}"
        )
    return user_id


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can name a run's state folder, else raise ``ConfigError``."""
    if not _RUN_ID_RE.fullmatch(run_id):
        raise ConfigError(
            f"invalid run_id {run_id!r}: use letters, digits and . _ : @ + - "
            "(up to 160 characters, starting with a letter or digit)"
        )
    return run_id


def year_prefix(year: int) -> str:
    return f"{RAW}/year={year:04d}/"


def month_prefix(year: int, month: int) -> str:
    return f"{year_prefix(year)}month={month:02d}/"


def day_prefix(day: date) -> str:
    return f"{RAW}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def user_day_prefix(day: date, user_id: str) -> str:
    return f"{day_prefix(day)}user={check_user_id(user_id)}/"


def raw_key(ts: datetime, user_id: str, source: str) -> str:
    """A new raw file's key: ``raw/year=/month=/day=/user=/{source}_{ts}_{uuid8}.parquet``."""
    if source not in SOURCES:
        raise ValueError(f"invalid source {source!r}: expected one of {', '.join(SOURCES)}")
    ts = ts.astimezone(UTC)
    stamp = ts.strftime("%Y%m%dT%H%M%S%fZ")
    return f"{user_day_prefix(ts.date(), user_id)}{source}_{stamp}_{uuid.uuid4().hex[:8]}.parquet"


def daily_summary_key(day: date) -> str:
    return f"{DAILY}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/part-0.parquet"


def latest_key(name: str) -> str:
    return f"{LATEST}/{name}"


DIRTY_PREFIX = f"{STATE}/dirty/"
AGGREGATE_MANIFEST_KEY = f"{STATE}/aggregate_manifest.json"
# Which days `plumbline demo` has already simulated (so a second demo only adds the new days).
DEMO_STATE_KEY = f"{STATE}/demo.json"


def dirty_marker_key(day: date) -> str:
    """An empty object whose presence says "re-aggregate this day" (written by GDPR operations,
    consumed and deleted by the nightly aggregation)."""
    return f"{DIRTY_PREFIX}{day.isoformat()}"


def health_probe_key() -> str:
    """A fresh key under ``state/health/`` for ``/api/health``'s write-and-delete probe (unique,
    so probes of several API processes never delete each other's object)."""
    return f"{STATE}/health/probe-{uuid.uuid4().hex[:12]}"


def run_state_prefix(run_id: str) -> str:
    """``state/runs/{run_id}/``: what a run keeps so that it can be resumed and found again."""
    return f"{RUNS}/{check_run_id(run_id)}/"


def run_manifest_key(run_id: str) -> str:
    """The run's parameters, written when it starts and checked when it resumes."""
    return f"{run_state_prefix(run_id)}manifest.json"


def run_lease_key(run_id: str) -> str:
    """Who holds the run id right now (``tasks.run.lease``): one flow run at a time."""
    return f"{run_state_prefix(run_id)}lease.json"


def run_days_prefix(run_id: str) -> str:
    return f"{run_state_prefix(run_id)}days/"


def run_day_marker_key(run_id: str, day: date) -> str:
    """An empty object saying "this run has rows in this day's partition"."""
    return f"{run_days_prefix(run_id)}{day.isoformat()}"


EMBEDDINGS = f"{STATE}/embeddings"
_ENCODER_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def embedding_cache_prefix(encoder: str) -> str:
    """Where one embedding model's cached vectors live (another model's are another cache)."""
    if not _ENCODER_RE.fullmatch(encoder):
        raise ValueError(f"encoder name {encoder!r} is not a storable key segment "
                         "(lowercase letters, digits, '.', '_', '-'; at most 64)")
    return f"{EMBEDDINGS}/{encoder}/"


def embedding_cache_key(encoder: str, day: date) -> str:
    """The vectors of one day's distinct outputs, by output hash (the meaning-drift metric)."""
    return (f"{embedding_cache_prefix(encoder)}year={day.year:04d}/month={day.month:02d}/"
            f"day={day.day:02d}/part-0.parquet")


def day_of_embedding_key(encoder: str, key: str) -> date | None:
    """The day of a key ``embedding_cache_key`` built (None for any other key)."""
    prefix = embedding_cache_prefix(encoder)
    if not key.startswith(prefix):
        return None
    return day_of_key(f"{RAW}/{key[len(prefix):]}")


def response_cache_key(digest: str) -> str:
    """A cached response's key, from the hex digest of the call (``tasks.run.cache``)."""
    return f"{RESPONSE_CACHE}/{digest[:2]}/{digest}.json"


# A model id becomes one segment of a key by percent-encoding every UTF-8 byte outside
# [a-z0-9._-] ("%" and uppercase letters included), plus a leading "." (so no slug is ".", "..",
# hidden, or ".tmp-": the local store's temp prefix). Injective and reversible, so two ids never
# share a key (the old "/" -> "__" mapping made `fake/stable` and `fake__stable` one file), and
# it stays injective where keys are compared case-insensitively (macOS and Windows folders):
# the only capitals a slug holds are the hex digits of its escapes, always uppercase.
_SLUG_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-")
_SLUG_RE = re.compile(r"(?:[a-z0-9_-]|%[0-9A-F]{2})(?:[a-z0-9._-]|%[0-9A-F]{2})*")
# A slug is a file name with ".json" appended: well under the 255 bytes file systems allow.
MAX_SLUG_CHARS = 240
MODEL_HISTORY = f"{LATEST}/model-history"
# Where history files lived under the old, non-injective slug: never read, removed by the
# nightly's publish (tasks.summaries.publish.publish_history).
LEGACY_HISTORY_PREFIX = f"{LATEST}/history/"


def model_slug(model_id: str) -> str:
    """A model id as one safe, reversible key segment: ``openai/gpt-4o`` → ``openai%2Fgpt-4o``.

    Raises ``ValueError`` for an empty id, one that is not valid Unicode (a lone surrogate), or
    one whose slug would be longer than ``MAX_SLUG_CHARS``.
    """
    try:
        raw = model_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"invalid model_id {model_id!r}: not valid Unicode") from None
    if not raw:
        raise ValueError("invalid model_id '': empty")
    slug = "".join(
        chr(b) if b in _SLUG_SAFE and not (i == 0 and b == ord(".")) else f"%{b:02X}"
        for i, b in enumerate(raw)
    )
    if len(slug) > MAX_SLUG_CHARS:
        raise ValueError(
            f"invalid model_id {model_id!r}: {len(slug)} characters once encoded for storage "
            f"(capital letters and symbols take 3 each), at most {MAX_SLUG_CHARS}")
    return slug


def model_id_of_slug(slug: str) -> str:
    """The model id a slug encodes (the inverse of ``model_slug``).

    Raises ``ValueError`` for a string ``model_slug`` never produces (so every id has exactly one
    slug, and a stray file name is never mistaken for one).
    """
    if len(slug) > MAX_SLUG_CHARS or not _SLUG_RE.fullmatch(slug):
        raise ValueError(f"not a model slug: {slug!r}")
    raw = bytearray()
    i = 0
    while i < len(slug):
        if slug[i] == "%":
            raw.append(int(slug[i + 1:i + 3], 16))
            i += 3
        else:
            raw.append(ord(slug[i]))
            i += 1
    try:
        model_id = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"not a model slug: {slug!r} (not UTF-8)") from None
    if model_slug(model_id) != slug:  # an escape of a byte that needs none: not canonical
        raise ValueError(f"not a model slug: {slug!r} (not in canonical form)")
    return model_id


def history_key(model_id: str) -> str:
    """``summaries/latest/model-history/{slug}.json``: one model's daily history."""
    return f"{MODEL_HISTORY}/{model_slug(model_id)}.json"


def _model_of_key(key: str, folder: str) -> str | None:
    """The model id of ``{folder}/{slug}.json``, or None if ``key`` is not such a key."""
    prefix = f"{folder}/"
    if not key.startswith(prefix) or not key.endswith(".json"):
        return None
    try:
        return model_id_of_slug(key[len(prefix):-len(".json")])
    except ValueError:
        return None


def model_of_history_key(key: str) -> str | None:
    """The model id of a history key, or None if ``key`` is not one."""
    return _model_of_key(key, MODEL_HISTORY)


MODEL_EVIDENCE = f"{LATEST}/model-evidence"


def evidence_key(model_id: str) -> str:
    """``summaries/latest/model-evidence/{slug}.json``: one flagged model's before/after answers
    (the same injective slug as its history)."""
    return f"{MODEL_EVIDENCE}/{model_slug(model_id)}.json"


def model_of_evidence_key(key: str) -> str | None:
    """The model id of an evidence key, or None if ``key`` is not one."""
    return _model_of_key(key, MODEL_EVIDENCE)


def day_of_key(key: str) -> date | None:
    """The partition date of a raw key, or None if the key is not a raw partition key."""
    m = _RAW_DAY_RE.match(key)
    return date(int(m[1]), int(m[2]), int(m[3])) if m else None


def user_of_key(key: str) -> str | None:
    m = _RAW_USER_RE.match(key)
    return m[1] if m else None


def days_between(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end`` inclusive."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def raw_days(store_keys: list[str]) -> list[date]:
    """The distinct partition days among raw keys, sorted."""
    return sorted({d for k in store_keys if (d := day_of_key(k)) is not None})


_FOLDER_INT_RE = re.compile(r"/(?:year|month|day)=([0-9]+)/\Z")


def _folder_value(folder: str) -> int | None:
    m = _FOLDER_INT_RE.search(folder)
    return int(m[1]) if m else None


def list_days(store: ObjectStore, start: date | None = None, end: date | None = None) -> list[date]:
    """The days that hold raw data, from ``start`` to ``end`` inclusive (either may be open).

    Walks the ``year=/month=/day=`` folders and descends only into those that overlap the range,
    so the cost grows with the partitions in range, never with the number of files or the
    history outside it.
    """
    lo = start or date.min
    hi = end or date.max
    days: list[date] = []
    for y_folder in child_folders(store, f"{RAW}/"):
        year = _folder_value(y_folder)
        if year is None or not lo.year <= year <= hi.year:
            continue
        for m_folder in child_folders(store, y_folder):
            month = _folder_value(m_folder)
            if month is None or not 1 <= month <= 12:
                continue
            if (year, month) < (lo.year, lo.month) or (year, month) > (hi.year, hi.month):
                continue
            for d_folder in child_folders(store, m_folder):
                dom = _folder_value(d_folder)
                if dom is None:
                    continue
                try:
                    day = date(year, month, dom)
                except ValueError:
                    continue  # not a real date: nothing Plumbline wrote
                if lo <= day <= hi:
                    days.append(day)
    return days


def user_partition(key: str) -> str:
    """The folder (``.../user={id}/``) a raw key lives in."""
    return key.rsplit("/", 1)[0] + "/"
