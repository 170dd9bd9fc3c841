"""Every setting phonebatch reads, in one typed object.

Built once at an entry point (the CLI, the worker app, the simulator) and passed down;
no other module reads the environment. Names users set are fixed by the design:
`VAPI_API_KEY`, `VAPI_BASE_URL`, `REDIS_URL`; the rest are `PHONEBATCH_` and the field's
name in capitals (`rate_limit`: `PHONEBATCH_RATE_LIMIT`), but for `PHONEBATCH_SCHEDULES`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DAY = 86_400


class Settings(BaseSettings):
    """Read from the environment and `.env`: each field from `PHONEBATCH_<NAME>`, except
    the three names the design fixes (their `validation_alias`) and the schedules file."""

    model_config = SettingsConfigDict(
        env_prefix="PHONEBATCH_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        populate_by_name=True,
    )  # fmt: skip

    vapi_api_key: SecretStr | None = Field(
        default=None, validation_alias="VAPI_API_KEY", description="workers only"
    )
    vapi_base_url: str = Field(default="https://api.vapi.ai", validation_alias="VAPI_BASE_URL")
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="REDIS_URL")
    sentinel_master: str | None = Field(
        default=None,
        description="with a sentinel:// REDIS_URL: the name the sentinels monitor the "
        "primary under (`sentinel monitor NAME ...`), for the broker and the store alike",
    )
    sentinel_password: SecretStr | None = Field(
        default=None,
        description="the sentinels' own password (their requirepass), if they have one; "
        "the Redis servers' password goes in REDIS_URL",
    )
    queue: str = Field(default="phonebatch")
    report_retention_days: float = Field(default=30, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    write_timeout: float = Field(default=10.0, gt=0)
    pool_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=64, gt=0)

    # --- pace: one limit for every worker on every host together ---------------------
    rate_limit: float | None = Field(
        default=None, ge=0,
        description="requests per second for all workers together, a ceiling the learned "
        "pace never passes; unset or 'auto': learn what the API accepts; 0: no limit",
    )  # fmt: skip
    max_in_flight: int = Field(
        default=0, ge=0,
        description="requests in flight for all workers together; 0 means no cap",
    )  # fmt: skip
    rate_headroom: float = Field(
        default=0.98, gt=0, le=1,
        description="pace at most at this share of PHONEBATCH_RATE_LIMIT, so network jitter "
        "that bunches requests up never puts a 1-second window over it",
    )  # fmt: skip
    read_max_age: float = Field(
        default=120.0, gt=0,
        description="seconds a number's read from the listing is trusted; an item whose "
        "read is older reads its number again by GET",
    )  # fmt: skip
    rate_start: float = Field(
        default=10.0, gt=0,
        description="requests per second to start at when nothing is learned yet and no "
        "limit is set; the pace grows from there until the API answers 429",
    )  # fmt: skip
    # --- retries --------------------------------------------------------------------
    max_attempts: int = Field(
        default=6, ge=1,
        description="attempts per item against 5xx, timeouts and dropped connections",
    )  # fmt: skip
    max_rate_limited_attempts: int = Field(
        default=30, ge=1,
        description="429 answers an item may get before it fails",
    )  # fmt: skip
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_cap: float = Field(default=30.0, gt=0)
    inline_wait_limit: float = Field(
        default=3.0, ge=0,
        description="longer waits hand the item back to the queue instead of holding a slot",
    )  # fmt: skip
    # --- crash safety -----------------------------------------------------------------
    task_time_budget: float = Field(
        default=60.0, gt=0,
        description="waiting inside one task past this hands the item back to the queue",
    )  # fmt: skip
    visibility_timeout: int = Field(
        default=300, gt=0,
        description="a task a dead worker held goes back to the queue after this long",
    )  # fmt: skip
    heartbeat_interval: float = Field(
        default=5.0, gt=0, le=60,
        description="a worker process beats this often; three beats missed and any other "
        "worker puts the tasks it held back on the queue, and the webhooks it was "
        "delivering back in the outbox",
    )  # fmt: skip
    self_resume_after: float = Field(
        default=60.0, ge=0,
        description="a batch with pending items and no task anywhere for this long is "
        "resumed by the workers themselves; 0 turns that off",
    )  # fmt: skip
    guard_threshold: float = Field(
        default=0.2, gt=0, lt=1,
        description="a batch pauses itself when more than this share of its last "
        "PHONEBATCH_GUARD_WINDOW outcomes failed for good (HTTP 4xx other than 429)",
    )  # fmt: skip
    guard_window: int = Field(
        default=50, ge=0,
        description="the outcomes the failure guard looks at; 0 turns the guard off",
    )  # fmt: skip
    auth_failure_limit: int = Field(
        default=3, ge=1,
        description="401/403 answers after which a batch stops sending",
    )  # fmt: skip

    log_format: str = Field(default="json", pattern="^(json|text)$")
    metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="a worker serves Prometheus metrics on this port; 0 means none",
    )  # fmt: skip
    metrics_host: str = Field(
        default="127.0.0.1",
        description="the address workers serve metrics on: this host only, unless set "
        "(0.0.0.0 inside a container network, for Prometheus there)",
    )
    list_page_size: int = Field(
        default=1000, ge=1, le=1000,
        description="numbers per page when a selector lists them (the API allows 1000)",
    )  # fmt: skip

    broker_transport: Literal["phonebatch", "kombu"] = Field(
        default="phonebatch",
        description="the workers' Redis transport: phonebatch's (fewer round trips per task, "
        "no message lost between pop and note) or kombu's own; phonebatch's falls back to "
        "kombu's by itself when the installed kombu lacks what it needs",
    )

    # --- the HTTP API, webhooks, schedules ----------------------------------------------
    api_token: SecretStr | None = Field(
        default=None,
        description="the bearer token every API route but /healthz requires",
    )  # fmt: skip
    api_max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    webhook_url: str | None = Field(
        default=None,
        description="where batch summaries go when a batch does not name its own",
    )  # fmt: skip
    webhook_allow_http: bool = Field(
        default=False,
        description="let webhooks go to http:// URLs (https only otherwise)",
    )
    webhook_allowlist: str = Field(
        default="",
        description="hosts, addresses and networks (comma-separated) webhooks may reach "
        "although they are internal (private, loopback, link-local)",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="signs webhook bodies (HMAC-SHA256); workers need it to send webhooks",
    )  # fmt: skip
    schedule_grace_seconds: float = Field(
        default=600, gt=0,
        description="a slot fired later than this (beat was down) is skipped",
    )  # fmt: skip
    schedules_path: str = Field(
        default="config/schedules.toml", validation_alias="PHONEBATCH_SCHEDULES"
    )

    @field_validator(
        "vapi_api_key", "api_token", "webhook_secret", "webhook_url", "sentinel_master",
        "sentinel_password", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `VAR=` in a compose file or .env means "not set", not "the empty string".
        return None if value == "" else value

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _auto_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @field_validator("vapi_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _visibility_outlasts_a_task(self) -> Settings:
        # The broker re-delivers a task still unacknowledged after the visibility
        # timeout: a live task must always finish well before that (kombu#337).
        if self.visibility_timeout <= self.claim_lease:
            raise ValueError(
                f"PHONEBATCH_VISIBILITY_TIMEOUT ({self.visibility_timeout} s) must be longer "
                f"than the longest a task can run ({self.claim_lease:.0f} s: the task time "
                "budget plus the HTTP timeouts plus 10 s)"
            )
        return self

    @model_validator(mode="after")
    def _sentinel_has_a_master(self) -> Settings:
        # kombu and redis-py both need the name; a guess would find no master, or another.
        if self.redis_url.startswith("sentinel://") and not self.sentinel_master:
            raise ValueError(
                "REDIS_URL is a sentinel:// URL: set PHONEBATCH_SENTINEL_MASTER to the name "
                "the sentinels monitor the primary under (`sentinel monitor NAME host port "
                "quorum` in sentinel.conf)"
            )
        return self

    @property
    def claim_lease(self) -> float:
        """The longest one task holds an item: waits, then one last request."""
        request = self.connect_timeout + self.write_timeout + self.read_timeout + self.pool_timeout
        return self.task_time_budget + request + 10

    @property
    def retention_seconds(self) -> int:
        return int(self.report_retention_days * DAY)


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment and `.env`, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
