"""The request and response bodies of the HTTP API, as pydantic models: they document
every route and status in the OpenAPI document (`/docs`, generated clients).

The routes answer with `JSONResponse`s built from `jobs.store.report` (the same dicts the
CLI prints), so a report page of 5,000 items is not validated twice; these models say
what those dicts hold. `tests/test_e2e_api.py` checks real answers against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool


class Problem(BaseModel):
    """An error: what is wrong, in one sentence."""

    detail: str


class RowProblem(BaseModel):
    """One invalid row of a batch."""

    row: int
    column: str | None
    message: str


class InvalidBatch(BaseModel):
    """A batch with invalid rows: nothing was queued."""

    detail: str
    errors: list[RowProblem]


class Accepted(BaseModel):
    """A new batch was queued; `Location` names it."""

    batch_id: str


class RollbackAccepted(Accepted):
    """A rollback batch was queued."""

    items: int
    not_restored: list[str] = Field(description="Numbers left alone, and why.")


class RetryAccepted(Accepted):
    """A retry batch of the failed items was queued."""

    items: int
    rows_left_out: list[int] = Field(
        description="Rows whose secret fields are not kept once sent: submit them again."
    )


class Counts(BaseModel):
    """Items by status."""

    total: int
    pending: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int


class FailureGuard(BaseModel):
    """The failure guard: pause when more than `threshold` of the last `window` outcomes
    failed for good (HTTP 4xx other than 429)."""

    threshold: float
    window: int


class Overlap(BaseModel):
    """A batch refused because other running batches hold some of its numbers."""

    detail: str
    held: list[dict[str, str]] = Field(description="Each held number and its holder.")


class BatchStatus(BaseModel):
    """A batch's state and counts: the top of the CLI's report JSON."""

    batch_id: str
    name: str
    source: str
    state: Literal["queued", "running", "paused", "completed", "cancelled"]
    counts: Counts
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    paused_at: str | None
    parent_id: str | None
    halted_reason: str | None
    retried_by: list[str]
    webhook: dict[str, Any] | None
    mode: Literal["update", "dry_run", "rollback"]
    force: bool
    rollback_of: str | None
    selecting: bool
    priority: Literal["high", "normal", "low"]
    canary: int = Field(description="Numbers sent before the batch paused to be checked.")
    guard: FailureGuard | None = Field(description="When the batch pauses itself; null: never.")
    allow_overlap: bool
    paused_by: Literal["canary", "guard"] | None = Field(
        description="What paused the batch, when it paused itself."
    )
    paused_reason: str | None = Field(description="Why the batch paused itself.")
    model_config = ConfigDict(extra="allow")


class BatchDetail(BatchStatus):
    """A batch's status, and whether it has stalled (`phonebatch resume` fixes that)."""

    stalled: bool


class BatchPage(BaseModel):
    """Batches, newest first."""

    batches: list[BatchStatus]
    next_offset: int | None


class ReportItem(BaseModel):
    """One number's outcome; numbers read first also have `reason`, `changes`, `before`,
    `read_at`, `in_target_state` or `conflicts`."""

    row: int
    id: str
    status: Literal["pending", "succeeded", "failed", "skipped", "cancelled"]
    http_status: int | None
    attempts: int
    error: str | None
    sent: dict[str, Any] | None
    model_config = ConfigDict(extra="allow")


class ReportPage(BatchStatus):
    """The CLI's report JSON (`phonebatch report ID --format json`), key for key, with one
    page of its items and where the next page starts."""

    items: list[ReportItem]
    offset: int
    limit: int
    next_offset: int | None


class Health(BaseModel):
    """Whether the API reaches Redis."""

    ok: bool
    redis: str


class Selection(BaseModel):
    """`POST /batches/select`: the numbers to change, found by their current values."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, Scalar]
    set: dict[str, Scalar]
    dry_run: bool = False
    force: bool = False
    name: str | None = None
    webhook_url: str | None = None
    priority: Literal["high", "normal", "low"] = "normal"
    canary: int = Field(default=0, ge=0, description="Send N numbers, then pause.")
    guard: bool = Field(default=True, description="Pause on a run of permanent failures.")
    guard_threshold: float | None = Field(default=None, gt=0, lt=1)
    guard_window: int | None = Field(default=None, ge=0)
    allow_overlap: bool = False


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each error status it may answer, as a `Problem`."""
    return {status: {"model": Problem, "description": _MEANING[status]} for status in statuses}


_MEANING = {
    401: "No valid bearer token.",
    404: "No such batch.",
    409: "The batch is not in a state that allows this.",
    413: "The batch is larger than PHONEBATCH_API_MAX_UPLOAD_BYTES.",
    415: "The batch's format is not known.",
    503: "Redis is unavailable; try again shortly.",
}
