"""The HTTP API (`phonebatch api`): other systems post batches and follow them.

Every route but `/healthz` needs `Authorization: Bearer $PHONEBATCH_API_TOKEN`. A batch
is validated exactly as the CLI validates a file, whole, before anything is queued.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
from functools import partial
from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile

from config import Settings
from jobs.intake import Intake, parse_assignments, read_batch
from jobs.metrics import BatchItemsCollector
from jobs.models import PROVIDERS
from jobs.producer import BatchOptions, submit_batch, submit_selection
from jobs.recovery import is_stalled
from jobs.report import csv_lines, item_dict, status_dict
from jobs.retries import NothingToRetry, retry_failed
from jobs.rollback import NothingToRollBack, submit_rollback
from jobs.sources import Format, InputError, detect_format
from jobs.store import (
    BatchMode,
    BatchState,
    BatchStatus,
    ItemStatus,
    StoreUnavailable,
    iter_items,
    new_batch_id,
)
from jobs.store_redis import RedisReportStore

IDEMPOTENCY_TTL = 24 * 3600
_CONTENT_TYPES = {
    "application/json": Format.JSON,
    "text/csv": Format.CSV,
    "application/csv": Format.CSV,
    "application/x-ndjson": Format.JSONL,
    "application/jsonl": Format.JSONL,
    "application/x-jsonlines": Format.JSONL,
}


class ApiError(HTTPException):
    pass


def _bearer_check(token: str | None) -> Any:
    def check(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return  # explicitly opened on localhost
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


async def _read_body(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The batch's bytes and, for an upload, its file name; 413 past `limit` bytes.

    The body is counted as it arrives, whatever the headers say, and a multipart upload is
    parsed only from those bounded bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    data = b"".join(chunks)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        return data, None

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    form = await Request(request.scope, receive=replay).form(
        max_files=1, max_fields=20, max_part_size=limit
    )
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(422, 'a multipart upload needs its batch file in a "file" field')
    return await upload.read(), upload.filename


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the batch is larger than {limit} bytes (PHONEBATCH_API_MAX_UPLOAD_BYTES)"
    )


def _format_of(request: Request, filename: str | None, declared: str | None) -> Format:
    if declared or filename:
        try:
            return detect_format(filename or "", declared)
        except InputError as exc:
            raise ApiError(415, str(exc)) from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _CONTENT_TYPES:
        raise ApiError(
            415,
            "send application/json, text/csv or application/x-ndjson, "
            'a multipart upload with a "file" field, or say ?format=csv|json|jsonl',
        )
    return _CONTENT_TYPES[kind]


def _validate(data: bytes, fmt: Format, provider: str | None, sets: list[str]) -> Intake:
    if provider is not None and provider not in PROVIDERS:
        raise ApiError(422, f"provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    try:
        text = data.decode("utf-8-sig")
        return read_batch(
            io.StringIO(text, newline=""), fmt, provider=provider, overrides=parse_assignments(sets)
        )
    except UnicodeDecodeError as exc:
        raise ApiError(
            422, f"the batch is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except InputError as exc:
        raise ApiError(422, str(exc)) from None


def create_api(settings: Settings, store: RedisReportStore, *, token: str | None) -> FastAPI:
    api = FastAPI(
        title="phonebatch",
        version="0.1.0",
        description="Bulk updates of Vapi phone numbers: post a batch, follow it, read its report.",
    )
    authorized = [Depends(_bearer_check(token))]

    @api.exception_handler(StoreUnavailable)
    @api.exception_handler(redis.ConnectionError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "Redis is unavailable; try again shortly"}, 503)

    @api.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        try:
            store.ping()
        except StoreUnavailable as exc:
            return JSONResponse({"ok": False, "redis": str(exc)}, 503)
        return JSONResponse({"ok": True, "redis": "ok"})

    registry = CollectorRegistry()
    registry.register(BatchItemsCollector(lambda: store.list_batches(0, 50)))

    @api.get("/metrics", dependencies=authorized, tags=["health"])
    def metrics() -> Response:
        """Prometheus metrics: this process's, and items by state of the 50 latest batches."""
        body = generate_latest(REGISTRY) + generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    _submission_routes(api, settings, store, authorized)
    _batch_routes(api, settings, store, authorized)
    _hold_routes(api, settings, store, authorized)
    return api


def _submission_routes(
    api: FastAPI, settings: Settings, store: RedisReportStore, authorized: list[Any]
) -> None:
    @api.post("/batches", status_code=202, dependencies=authorized, tags=["batches"])
    async def post_batch(
        request: Request,
        provider: str | None = None,
        name: str | None = None,
        webhook_url: str | None = None,
        set_: Annotated[list[str], Query(alias="set")] = [],  # noqa: B006 - FastAPI reads it
        format_: Annotated[str | None, Query(alias="format")] = None,
        dry_run: bool = False,
        force: bool = False,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        """A batch as JSON (like a JSON batch file), CSV or JSONL, raw or as an upload."""
        data, filename = await _read_body(request, settings.api_max_upload_bytes)
        fmt = _format_of(request, filename, format_)
        # Parsing and validating up to the upload limit is CPU work: off the event loop.
        intake = await run_in_threadpool(_validate, data, fmt, provider, set_)
        if not intake.ok:
            return JSONResponse(
                {
                    "detail": (
                        f"{intake.bad_rows} of {intake.rows} rows are invalid; nothing was queued"
                    ),
                    "errors": [e.as_dict() for e in intake.errors],
                },
                422,
            )
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise ApiError(422, "webhook_url must be an http(s) URL")
        batch_id = new_batch_id()
        if idempotency_key:
            options = json.dumps([provider, name, webhook_url, set_, dry_run, force]).encode()
            fingerprint = hashlib.sha256(data + options).hexdigest()
            first = _remember(store, idempotency_key, batch_id, fingerprint)
            if first != batch_id:
                return _accepted(first)
        try:
            await run_in_threadpool(
                partial(
                    submit_batch,
                    intake.items,
                    store=store,
                    broker=store.client,
                    queue=settings.queue,
                    name=name or filename or "api batch",
                    source="api",
                    webhook_url=webhook_url or settings.webhook_url,
                    batch_id=batch_id,
                    options=BatchOptions(
                        mode=BatchMode.DRY_RUN if dry_run else BatchMode.UPDATE, force=force
                    ),
                )
            )
        except Exception:
            if idempotency_key:  # the key must not point at a batch that does not exist
                _forget(store, idempotency_key)
            raise
        return _accepted(batch_id)

    @api.post("/batches/select", status_code=202, dependencies=authorized, tags=["batches"])
    def post_selection(selection: Selection) -> JSONResponse:
        """Every number whose current values match `where` gets `set` (listed by a worker)."""
        if not selection.where or not selection.set:
            raise ApiError(422, "a selection needs `where` conditions and `set` values")
        mode = BatchMode.DRY_RUN if selection.dry_run else BatchMode.UPDATE
        batch_id = submit_selection(
            {k: _text(v) for k, v in selection.where.items()},
            {k: _text(v) for k, v in selection.set.items()},
            store=store, broker=store.client, queue=settings.queue,
            name=selection.name or "selection", source="api",
            webhook_url=selection.webhook_url or settings.webhook_url,
            options=BatchOptions(mode=mode, force=selection.force),
        )  # fmt: skip
        return _accepted(batch_id)


def _batch_routes(
    api: FastAPI, settings: Settings, store: RedisReportStore, authorized: list[Any]
) -> None:
    @api.get("/batches", dependencies=authorized, tags=["batches"])
    def list_batches(
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Batches, newest first."""
        batches = store.list_batches(offset, limit)
        more = len(batches) == limit
        return {
            "batches": [status_dict(b) for b in batches],
            "next_offset": offset + limit if more else None,
        }

    @api.get("/batches/{batch_id}", dependencies=authorized, tags=["batches"])
    def get_batch(batch_id: str) -> dict[str, Any]:
        status = _existing(store, batch_id)
        stalled = is_stalled(store.client, settings.queue, status, settings.claim_lease)
        return status_dict(status) | {"stalled": stalled}

    @api.get("/batches/{batch_id}/report", dependencies=authorized, tags=["batches"])
    def get_report(
        batch_id: str,
        format_: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        status: ItemStatus | None = None,
    ) -> Response:
        """Items a page at a time as JSON, or every item as a streamed CSV."""
        batch = _existing(store, batch_id)
        only = frozenset({status}) if status else None
        if format_ == "csv":
            lines = csv_lines(iter_items(store, batch_id, batch.counts.total, only=only))
            disposition = f'attachment; filename="phonebatch-{batch_id}.csv"'
            return StreamingResponse(
                lines, media_type="text/csv", headers={"Content-Disposition": disposition}
            )
        page = [r for r in store.items(batch_id, offset, limit) if only is None or r.status in only]
        more = offset + limit < batch.counts.total
        return JSONResponse(
            {
                "batch": status_dict(batch),
                "items": [item_dict(r) for r in page],
                "offset": offset,
                "limit": limit,
                "next_offset": offset + limit if more else None,
            }
        )

    @api.post("/batches/{batch_id}/cancel", dependencies=authorized, tags=["batches"])
    def cancel_batch(batch_id: str) -> JSONResponse:
        _existing(store, batch_id)
        final = store.cancel(batch_id)
        return _changed(batch_id, final, final is not None and final.state is BatchState.CANCELLED)

    @api.post(
        "/batches/{batch_id}/rollback", status_code=202, dependencies=authorized, tags=["batches"]
    )
    def rollback_batch(batch_id: str, force: bool = False) -> JSONResponse:
        """Put back what the batch overwrote; numbers changed since are left alone unless
        forced."""
        _existing(store, batch_id)
        try:
            child, plan = submit_rollback(
                store, settings.queue, batch_id, force=force, source="api"
            )
        except NothingToRollBack as exc:
            raise ApiError(409, str(exc)) from None
        body = {"batch_id": child, "items": len(plan.items), "not_restored": plan.left_out}
        return JSONResponse(body, 202, headers={"Location": f"/batches/{child}"})

    @api.post(
        "/batches/{batch_id}/retry", status_code=202, dependencies=authorized, tags=["batches"]
    )
    def retry_batch(batch_id: str) -> JSONResponse:
        _existing(store, batch_id)
        try:
            made = retry_failed(store, settings.queue, batch_id)
        except NothingToRetry as exc:
            raise ApiError(409, str(exc)) from None
        body = {
            "batch_id": made.batch_id,
            "items": made.count,
            "rows_left_out": made.rows_without_secrets,  # their secrets are not kept
        }
        return JSONResponse(body, 202, headers={"Location": f"/batches/{made.batch_id}"})


def _hold_routes(
    api: FastAPI, settings: Settings, store: RedisReportStore, authorized: list[Any]
) -> None:
    @api.post("/batches/{batch_id}/pause", dependencies=authorized, tags=["batches"])
    def pause_batch(batch_id: str) -> JSONResponse:
        """As `phonebatch pause`: no new request starts; `409` if the batch had ended."""
        _existing(store, batch_id)
        final = store.pause(batch_id)
        return _changed(batch_id, final, final is not None and final.state is BatchState.PAUSED)

    @api.post("/batches/{batch_id}/continue", dependencies=authorized, tags=["batches"])
    def continue_batch(batch_id: str) -> JSONResponse:
        """As `phonebatch continue`; `409` if the batch was not paused."""
        _existing(store, batch_id)
        answer = store.continue_batch(batch_id, settings.queue)
        return _changed(batch_id, answer and answer[1], bool(answer and answer[0]))


def _changed(batch_id: str, final: BatchStatus | None, done: bool) -> JSONResponse:
    """The answer to a cancel, pause or continue: the status, `409` if it changed nothing."""
    if final is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    return JSONResponse(status_dict(final), 200 if done else 409)


class Selection(BaseModel):
    """`POST /batches/select`: the numbers to change, found by their current values."""

    model_config = ConfigDict(extra="forbid")
    where: dict[str, str | int | float | bool]
    set: dict[str, str | int | float | bool]
    dry_run: bool = False
    force: bool = False
    name: str | None = None
    webhook_url: str | None = None


def _text(value: str | int | float | bool) -> str:
    """Values as a CLI user would type them: the schema reads them back."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _accepted(batch_id: str) -> JSONResponse:
    return JSONResponse({"batch_id": batch_id}, 202, headers={"Location": f"/batches/{batch_id}"})


def _existing(store: RedisReportStore, batch_id: str) -> BatchStatus:
    status = store.status(batch_id)
    if status is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    return status


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
