"""`POST /batches` (a batch file's rows) and `POST /batches/select` (numbers found by
their current values): validated whole, then queued; 202 with the new batch's id."""

from __future__ import annotations

import contextlib
import hashlib
import json
from functools import partial
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from config import Settings
from jobs.api.deps import ApiError, Authorized, SettingsDep, StoreDep
from jobs.api.schemas import Accepted, InvalidBatch, Overlap, Scalar, Selection, problems
from jobs.api.upload import format_of as batch_format
from jobs.api.upload import read_body, validate_batch
from jobs.batch.selection import values_problems
from jobs.batch.text import first_text_problem
from jobs.operations.destinations import destinations, webhook_problem
from jobs.operations.options import Choices, OptionError, batch_options, default_guard
from jobs.operations.producer import BatchOptions, submit_batch, submit_selection
from jobs.store.interface import new_batch_id
from jobs.store.redis_store import RedisReportStore

IDEMPOTENCY_TTL = 24 * 3600

router = APIRouter(tags=["batches"], dependencies=Authorized)

_ROWS = {"type": "array", "items": {"type": "object", "additionalProperties": True}}
BATCH_BODY: dict[str, Any] = {
    "required": True,
    "description": "A batch as its file would hold it: rows with `id`, `provider` and the "
    "body fields by their API names (dotted names nest). JSON is a list of rows or "
    '`{"defaults": {...}, "items": [...]}`; JSONL one row per line; or a multipart upload '
    'with the file in a "file" field.',
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    _ROWS,
                    {
                        "type": "object",
                        "properties": {"defaults": {"type": "object"}, "items": _ROWS},
                        "required": ["items"],
                    },
                ]
            }
        },
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
    },
}
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Queued; `Location` names the batch."}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidBatch, "description": "Invalid rows, or a malformed batch."}
}
OVERLAPS: dict[int | str, dict[str, Any]] = {
    409: {
        "model": Overlap,
        "description": "Running batches hold some of its numbers (`allow_overlap` to go on).",
    }
}


def batch_choices(
    dry_run: bool = False,
    force: bool = False,
    priority: Literal["high", "normal", "low"] = "normal",
    canary: Annotated[int, Query(ge=0, description="Send N numbers, then pause.")] = 0,
    guard: Annotated[bool, Query(description="Pause on a run of permanent failures.")] = True,
    guard_threshold: Annotated[float | None, Query(gt=0, lt=1)] = None,
    guard_window: Annotated[int | None, Query(ge=0)] = None,
    allow_overlap: bool = False,
) -> Choices:
    """A batch's options, from the query string."""
    return Choices(
        dry_run=dry_run, force=force, priority=priority, canary=canary, guard=guard,
        guard_threshold=guard_threshold, guard_window=guard_window, allow_overlap=allow_overlap,
    )  # fmt: skip


@router.post(
    "/batches",
    status_code=202,
    responses=ACCEPTED | INVALID | OVERLAPS | problems(401, 413, 415, 503),
    openapi_extra={"requestBody": BATCH_BODY},
)
async def post_batch(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    choices: Annotated[Choices, Depends(batch_choices)],
    provider: str | None = None,
    name: str | None = None,
    webhook_url: str | None = None,
    set_: Annotated[list[str], Query(alias="set")] = [],  # noqa: B006 - FastAPI reads it
    format_: Annotated[str | None, Query(alias="format")] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """A batch as JSON (like a JSON batch file), CSV or JSONL, raw or as an upload."""
    options = _options(settings, choices)
    data, filename = await read_body(request, settings.api_max_upload_bytes)
    fmt = batch_format(request, filename, format_)
    # Parsing and validating up to the upload limit is CPU work: off the event loop.
    intake = await run_in_threadpool(validate_batch, data, fmt, provider, set_)
    if not intake.ok:
        detail = f"{intake.bad_rows} of {intake.rows} rows are invalid; nothing was queued"
        return JSONResponse({"detail": detail, "errors": [e.as_dict() for e in intake.errors]}, 422)
    _check_webhook(webhook_url or settings.webhook_url, settings)
    batch_id = new_batch_id()
    if idempotency_key:
        given = json.dumps([provider, name, webhook_url, set_, repr(choices)]).encode()
        fingerprint = hashlib.sha256(data + given).hexdigest()
        first = _remember(store, idempotency_key, batch_id, fingerprint)
        if first != batch_id:
            return accepted(first)
    submit = partial(
        submit_batch, intake.items, store=store, broker=store.client, queue=settings.queue,
        name=name or filename or "api batch", source="api",
        webhook_url=webhook_url or settings.webhook_url, batch_id=batch_id, options=options,
    )  # fmt: skip
    try:
        await run_in_threadpool(submit)
    except Exception:
        if idempotency_key:  # the key must not point at a batch that does not exist
            _forget(store, idempotency_key)
        raise
    return accepted(batch_id)


@router.post(
    "/batches/select",
    status_code=202,
    responses=ACCEPTED | INVALID | problems(401, 413, 503),
)
def post_selection(selection: Selection, settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """Every number whose current values match `where` gets `set` (listed by a worker)."""
    if not selection.where or not selection.set:
        raise ApiError(422, "a selection needs `where` conditions and `set` values")
    unsendable = first_text_problem({"where": selection.where, "set": selection.set})
    if unsendable is not None:
        raise ApiError(422, f"{unsendable[0]} {unsendable[1]}")
    values = {k: _text(v) for k, v in selection.set.items()}
    if problems := values_problems(values):
        detail = "the `set` values fit no number; nothing was queued"
        return JSONResponse({"detail": detail, "errors": [e.as_dict() for e in problems]}, 422)
    _check_webhook(selection.webhook_url or settings.webhook_url, settings)
    choices = Choices(
        dry_run=selection.dry_run, force=selection.force, priority=selection.priority,
        canary=selection.canary, guard=selection.guard,
        guard_threshold=selection.guard_threshold, guard_window=selection.guard_window,
        allow_overlap=selection.allow_overlap,
    )  # fmt: skip
    batch_id = submit_selection(
        {k: _text(v) for k, v in selection.where.items()},
        values,
        store=store, broker=store.client, queue=settings.queue,
        name=selection.name or "selection", source="api",
        webhook_url=selection.webhook_url or settings.webhook_url,
        options=_options(settings, choices),
    )  # fmt: skip
    return accepted(batch_id)


def _options(settings: Settings, choices: Choices) -> BatchOptions:
    try:
        return batch_options(choices, default_guard(settings))
    except OptionError as exc:
        raise ApiError(422, str(exc)) from None


def _check_webhook(url: str | None, settings: Settings) -> None:
    if (problem := webhook_problem(url, destinations(settings))) is not None:
        raise ApiError(422, problem)


def accepted(batch_id: str, body: dict[str, Any] | None = None) -> JSONResponse:
    """202 for a new batch, with `Location` naming it."""
    content = {"batch_id": batch_id} | (body or {})
    return JSONResponse(content, 202, headers={"Location": f"/batches/{batch_id}"})


def _text(value: Scalar) -> str:
    """Values as a CLI user would type them: the schema reads them back."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _idempotency_key(key: str) -> str:
    return "phonebatch:idempotency:" + hashlib.sha256(key.encode()).hexdigest()


def _forget(store: RedisReportStore, key: str) -> None:
    with contextlib.suppress(redis.RedisError):
        store.client.delete(_idempotency_key(key))


def _remember(store: RedisReportStore, key: str, batch_id: str, fingerprint: str) -> str:
    """The batch id first stored for this Idempotency-Key (this one if it is the first)."""
    redis_key = _idempotency_key(key)
    value = f"{batch_id}|{fingerprint}"
    if store.client.set(redis_key, value, nx=True, ex=IDEMPOTENCY_TTL):
        return batch_id
    stored = store.client.get(redis_key)
    text = stored.decode() if isinstance(stored, bytes) else str(stored or "")
    first_id, _, first_print = text.partition("|")
    if first_print != fingerprint:
        raise ApiError(422, "this Idempotency-Key was used for a different batch")
    return first_id
