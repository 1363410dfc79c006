"""One settings object, read from the environment and `.env`, passed down to everything else."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tasks.errors import ConfigError

_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "development"}


class Settings(BaseSettings):
    """Plumbline's configuration. Environment names match the seed deployment's where it had one."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    # --- provider calls (docs/providers.md) ---
    # Calls in flight per shard task; a provider's max_in_flight bounds a whole process.
    default_concurrency: int = Field(
        16, ge=1, le=1024,
        validation_alias=AliasChoices("PLUMBLINE_CONCURRENCY", "default_concurrency"),
    )
    # Per provider prefix: {"openai": {"rpm": 500, "tpm": 200000, "max_in_flight": 32}}.
    provider_limits: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("PLUMBLINE_PROVIDER_LIMITS", "provider_limits"),
    )
    request_timeout_s: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("PLUMBLINE_REQUEST_TIMEOUT", "request_timeout_s")
    )
    max_attempts: int = Field(
        6, ge=1, le=20, validation_alias=AliasChoices("PLUMBLINE_MAX_ATTEMPTS", "max_attempts")
    )
    # Opt-in: a cached answer is reused only for the same model, input, parameters and sample.
    response_cache: bool = Field(
        False, validation_alias=AliasChoices("PLUMBLINE_RESPONSE_CACHE", "response_cache")
    )
    # Extra prices layered over tasks/providers/pricing.toml.
    pricing_file: Path | None = Field(
        None, validation_alias=AliasChoices("PLUMBLINE_PRICING_FILE", "pricing_file")
    )
    # The http/<name> targets (docs/providers.md); read by the process that makes the calls.
    targets_file: Path = Field(
        Path("targets.toml"),
        validation_alias=AliasChoices("PLUMBLINE_TARGETS_FILE", "targets_file"),
    )

    environment: Literal["development", "production"] = Field(
        "development", validation_alias=AliasChoices("PLUMBLINE_ENV", "environment")
    )
    storage_backend: Literal["local", "b2"] = Field(
        "local", validation_alias=AliasChoices("PLUMBLINE_STORAGE", "storage_backend")
    )
    data_dir: Path = Field(
        Path("./data"), validation_alias=AliasChoices("PLUMBLINE_DATA_DIR", "data_dir")
    )
    # The seed's B2 names; B2_KEY_ID is the older spelling and is accepted too.
    b2_key_id: str | None = Field(
        None, validation_alias=AliasChoices("B2_APPLICATION_KEY_ID", "B2_KEY_ID", "b2_key_id")
    )
    b2_application_key: str | None = Field(
        None, validation_alias=AliasChoices("B2_APPLICATION_KEY", "b2_application_key")
    )
    b2_bucket_name: str | None = Field(
        None, validation_alias=AliasChoices("B2_BUCKET_NAME", "b2_bucket_name")
    )
    nextauth_secret: str | None = Field(
        None, validation_alias=AliasChoices("NEXTAUTH_SECRET", "nextauth_secret")
    )
    # NoDecode: the comma-separated form below is parsed by the validator, not as JSON.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("CORS_ORIGINS", "cors_origins")
    )
    # Attempts per B2 operation on transient errors (5xx, 429, timeouts), with backoff.
    b2_max_attempts: int = Field(
        5, ge=1, validation_alias=AliasChoices("PLUMBLINE_B2_MAX_ATTEMPTS", "b2_max_attempts")
    )

    # --- API limits and the submission spool (see docs/api.md) ---
    rate_limit_per_minute: int = Field(
        60, ge=0, validation_alias=AliasChoices("RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute")
    )  # per client IP; 0 disables the limiter (benchmarks, a trusted internal deployment)
    # Peers whose X-Forwarded-For is believed (IPs or CIDRs, e.g. the reverse proxy's address).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=AliasChoices("TRUSTED_PROXIES", "trusted_proxies")
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024,
        validation_alias=AliasChoices("MAX_BODY_BYTES", "max_body_bytes"),
    )
    # Total bytes of a request's header lines (names and values). The HTTP parser itself stops
    # buffering a request head at twice this, so a huge header costs at most that much memory.
    max_header_bytes: int = Field(
        16 * 1024, ge=4096, le=8 * 1024 * 1024,
        validation_alias=AliasChoices("MAX_HEADER_BYTES", "max_header_bytes"),
    )
    # A bearer token longer than this is refused before any JWT decoding (a NextAuth token is
    # well under 1 KiB).
    max_token_bytes: int = Field(
        4096, ge=256, le=64 * 1024,
        validation_alias=AliasChoices("MAX_TOKEN_BYTES", "max_token_bytes"),
    )
    # Open connections the API server accepts before answering 503: bounds its memory and file
    # descriptors however many clients connect.
    api_max_connections: int = Field(
        1000, ge=1, validation_alias=AliasChoices("API_MAX_CONNECTIONS", "api_max_connections")
    )
    # None: `{data_dir}/spool`. Must be a local disk: acknowledged submissions live here until
    # they are flushed to the object store.
    spool_dir: Path | None = Field(
        None, validation_alias=AliasChoices("PLUMBLINE_SPOOL_DIR", "spool_dir")
    )
    spool_flush_rows: int = Field(
        5000, ge=1, validation_alias=AliasChoices("SPOOL_FLUSH_ROWS", "spool_flush_rows")
    )
    spool_flush_seconds: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("SPOOL_FLUSH_SECONDS", "spool_flush_seconds")
    )
    # Dedupe keys (one per accepted submission, ~500 bytes on disk) are forgotten after this
    # many days, and beyond DEDUPE_MAX_KEYS the oldest first: a result re-sent later than that
    # is stored again. Bounds the spool database however many submissions arrive.
    dedupe_keep_days: float = Field(
        30.0, gt=0, le=3650,
        validation_alias=AliasChoices("DEDUPE_KEEP_DAYS", "dedupe_keep_days"),
    )
    dedupe_max_keys: int = Field(
        1_000_000, ge=1000,
        validation_alias=AliasChoices("DEDUPE_MAX_KEYS", "dedupe_max_keys"),
    )
    # API worker processes for `plumbline api` (uvicorn workers sharing one port, the spool and
    # the rate-limit counts); --workers overrides it.
    api_workers: int = Field(
        1, ge=1, le=64, validation_alias=AliasChoices("API_WORKERS", "api_workers")
    )
    # How long a remote store's summary file is served from memory before it is fetched again
    # (a local store is revalidated by file stat on every read instead).
    summary_cache_seconds: float = Field(
        10.0, ge=0,
        validation_alias=AliasChoices("SUMMARY_CACHE_SECONDS", "summary_cache_seconds"),
    )

    # --- /metrics (docs/api.md#metrics) ---
    # Unset: on in development; in production only when METRICS_TOKEN is set, so a public
    # deployment never exposes its metrics by default. True serves them without a token (a
    # private network); False removes the route.
    metrics_enabled: bool | None = Field(
        None, validation_alias=AliasChoices("METRICS_ENABLED", "metrics_enabled")
    )
    # When set, /metrics answers only `Authorization: Bearer <token>` (Prometheus'
    # `authorization.credentials`); compared in constant time.
    metrics_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("METRICS_TOKEN", "metrics_token")
    )
    # Models with a gauge of their own: model ids come from the published models.json, which
    # community submissions feed, so the series they add are capped (most recent rows first).
    metrics_max_models: int = Field(
        500, ge=0, le=100_000,
        validation_alias=AliasChoices("METRICS_MAX_MODELS", "metrics_max_models"),
    )

    # --- nightly drift stage ---
    drift_webhook_url: str | None = Field(
        None, validation_alias=AliasChoices("DRIFT_WEBHOOK_URL", "drift_webhook_url")
    )
    drift_recent_days: int = Field(
        7, ge=1, le=365,
        validation_alias=AliasChoices("PLUMBLINE_DRIFT_RECENT_DAYS", "drift_recent_days"),
    )
    drift_baseline_days: int = Field(
        28, ge=1, le=3650,
        validation_alias=AliasChoices("PLUMBLINE_DRIFT_BASELINE_DAYS", "drift_baseline_days"),
    )
    # Prompts per flagged model whose baseline and recent answers the night publishes
    # (docs/drift.md, "Before and after"); each costs a read of that prompt's raw rows.
    evidence_max_prompts: int = Field(
        5, ge=1, le=50,
        validation_alias=AliasChoices("PLUMBLINE_EVIDENCE_MAX_PROMPTS", "evidence_max_prompts"),
    )

    # --- community evidence (docs/drift.md, "Evidence") ---
    # Community rows one contributor counts per model and day, the earliest first; 0 counts none.
    community_cap_per_user_day: int = Field(
        50, ge=0, le=1_000_000,
        validation_alias=AliasChoices("COMMUNITY_CAP_PER_USER_DAY", "community_cap_per_user_day"),
    )
    # Anonymous rows cannot be told apart by sender, so the cap cannot protect against one of
    # them: they count (all together as one contributor) only when the operator says so.
    community_allow_anonymous: bool = Field(
        False,
        validation_alias=AliasChoices("COMMUNITY_ALLOW_ANONYMOUS", "community_allow_anonymous"),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"TRUSTED_PROXIES entry {entry!r} is not an IP address or network"
                ) from None
        return value

    # The models the daily canary checks (PLUMBLINE_TRACKED_MODELS="openai/gpt-4o,fake/stable").
    # The offline fake models by default, so a fresh install's schedule runs without any key.
    tracked_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["fake/stable", "fake/drifting"],
        validation_alias=AliasChoices("PLUMBLINE_TRACKED_MODELS", "tracked_models"),
    )

    @field_validator("cors_origins", "trusted_proxies", "tracked_models", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Lists from the environment as a comma-separated string (CORS_ORIGINS="https://a,https://b",
        # as the seed set it) or a JSON list.
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.metrics_token is not None:
            token = self.metrics_token.get_secret_value()
            if len(token) < 16 or token.strip().lower() in _PLACEHOLDER_SECRETS:
                # /metrics is exempt from the rate limit: a short token could be guessed.
                raise ConfigError("METRICS_TOKEN must be at least 16 characters when set")
        if self.storage_backend == "b2":
            missing = [
                env
                for env, value in (
                    ("B2_APPLICATION_KEY_ID", self.b2_key_id),
                    ("B2_APPLICATION_KEY", self.b2_application_key),
                    ("B2_BUCKET_NAME", self.b2_bucket_name),
                )
                if not value
            ]
            if missing:
                raise ConfigError(
                    "PLUMBLINE_STORAGE=b2 needs " + ", ".join(missing) + " to be set"
                )
        if self.environment == "production" and (
            self.nextauth_secret is None
            or self.nextauth_secret.strip().lower() in _PLACEHOLDER_SECRETS
            or len(self.nextauth_secret) < 16
        ):
            raise ConfigError(
                "NEXTAUTH_SECRET must be a real secret (16+ characters) "
                "when PLUMBLINE_ENV=production"
            )
        return self

    @property
    def metrics_on(self) -> bool:
        """Whether the API serves ``/metrics`` (see ``metrics_enabled``)."""
        if self.metrics_enabled is not None:
            return self.metrics_enabled
        return self.environment == "development" or self.metrics_token is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests build their own ``Settings`` instead."""
    return Settings()
