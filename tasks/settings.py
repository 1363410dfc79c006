"""One settings object, read from the environment and `.env`, passed down to everything else."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.errors import ConfigError

_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "development"}


class Settings(BaseSettings):
    """Plumbline's configuration. Environment names match the seed deployment's where it had one."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", populate_by_name=True
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
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("CORS_ORIGINS", "cors_origins")
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

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # CORS_ORIGINS="https://a.example,https://b.example" as the seed set it.
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return value  # JSON list, let pydantic parse it
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests build their own ``Settings`` instead."""
    return Settings()
