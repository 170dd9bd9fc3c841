"""A posted batch: its bytes (bounded as they arrive), its format, and its rows validated
exactly as the CLI validates a file."""

from __future__ import annotations

import io
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from jobs.api.deps import ApiError
from jobs.batch.intake import Intake, parse_assignments, read_batch
from jobs.batch.models import PROVIDERS
from jobs.batch.sources import Format, InputError, detect_format

CONTENT_TYPES = {
    "application/json": Format.JSON,
    "text/csv": Format.CSV,
    "application/csv": Format.CSV,
    "application/x-ndjson": Format.JSONL,
    "application/jsonl": Format.JSONL,
    "application/x-jsonlines": Format.JSONL,
}


async def read_body(request: Request, limit: int) -> tuple[bytes, str | None]:
    """The batch's bytes and, for an upload, its file name; 413 past `limit` bytes.

    The body is counted as it arrives, whatever the headers say, and a multipart upload is
    parsed only from those bounded bytes."""
    data = await read_bounded(request, limit)
    if _kind(request) != "multipart/form-data":
        return data, None
    form = await parse_form(request, data, limit)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(422, 'a multipart upload needs its batch file in a "file" field')
    return await upload.read(), upload.filename


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request's body, counted as it arrives whatever the headers say; 413 past
    `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_form(request: Request, data: bytes, limit: int) -> FormData:
    """A multipart form parsed from bytes already read (and bounded): one file at most."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return await Request(request.scope, receive=replay).form(
        max_files=1, max_fields=20, max_part_size=limit
    )


def _kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the batch is larger than {limit} bytes (PHONEBATCH_API_MAX_UPLOAD_BYTES)"
    )


def format_of(request: Request, filename: str | None, declared: str | None) -> Format:
    """`?format=`, else the upload's file name, else the Content-Type; 415 if none says."""
    if declared or filename:
        try:
            return detect_format(filename or "", declared)
        except InputError as exc:
            raise ApiError(415, str(exc)) from None
    kind = _kind(request)
    if kind not in CONTENT_TYPES:
        raise ApiError(
            415,
            "send application/json, text/csv or application/x-ndjson, "
            'a multipart upload with a "file" field, or say ?format=csv|json|jsonl',
        )
    return CONTENT_TYPES[kind]


def validate_batch(data: bytes, fmt: Format, provider: str | None, sets: list[str]) -> Intake:
    """Every row read and validated; 422 when the batch cannot be read at all."""
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
