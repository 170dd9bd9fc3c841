"""Every setting phonebatch reads, in one typed object.

Built once at an entry point (the CLI, the worker app, the simulator) and passed down;
no other module reads the environment. Names users set are fixed by the design:
`VAPI_API_KEY`, `VAPI_BASE_URL`, `REDIS_URL`; the rest start with `PHONEBATCH_`.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DAY = 86_400


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    vapi_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("VAPI_API_KEY"), description="workers only"
    )
    vapi_base_url: str = Field(
        default="https://api.vapi.ai", validation_alias=_env("VAPI_BASE_URL")
    )
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias=_env("REDIS_URL"))
    queue: str = Field(default="phonebatch", validation_alias=_env("PHONEBATCH_QUEUE"))
    report_retention_days: float = Field(
        default=30, gt=0, validation_alias=_env("PHONEBATCH_REPORT_RETENTION_DAYS")
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, validation_alias=_env("PHONEBATCH_CONNECT_TIMEOUT")
    )
    read_timeout: float = Field(
        default=30.0, gt=0, validation_alias=_env("PHONEBATCH_READ_TIMEOUT")
    )
    write_timeout: float = Field(
        default=10.0, gt=0, validation_alias=_env("PHONEBATCH_WRITE_TIMEOUT")
    )
    pool_timeout: float = Field(default=5.0, gt=0, validation_alias=_env("PHONEBATCH_POOL_TIMEOUT"))
    max_connections: int = Field(
        default=64, gt=0, validation_alias=_env("PHONEBATCH_MAX_CONNECTIONS")
    )

    @field_validator("vapi_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def retention_seconds(self) -> int:
        return int(self.report_retention_days * DAY)


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment and `.env`, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
