"""A batch page's live updates (server-sent events) and its report downloads, both
streamed: memory holds one status, or one page of items, whatever the batch's size."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from jobs.store.interface import BatchStatus, iter_items
from jobs.store.pace import read_paces
from jobs.store.redis_store import RedisReportStore
from jobs.store.report import csv_lines, json_chunks
from jobs.store.timeline import read as read_timeline
from jobs.web.auth import SignedIn
from jobs.web.pages import store_of
from jobs.web.views import live

router = APIRouter(include_in_schema=False)
EVERY = 1.0  # seconds between two updates of a page
STREAM_FOR = 300.0  # then the stream ends and the browser reconnects (a shutdown never
# waits on a page left open for long, and no connection lives for ever)


def _existing(store: RedisReportStore, batch_id: str) -> BatchStatus:
    found = store.status(batch_id)
    if found is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return found


def update(store: RedisReportStore, batch_id: str) -> dict[str, object] | None:
    found = store.status(batch_id)
    if found is None:
        return None
    paces = read_paces(store.client)
    return live(found, time.time(), paces, read_timeline(store.client, batch_id))


@router.get("/ui/batches/{batch_id}/events")
async def events(request: Request, batch_id: str, _: SignedIn) -> StreamingResponse:
    """An update every `EVERY` seconds until the batch ends (or `STREAM_FOR` passes)."""
    store = store_of(request)
    _existing(store, batch_id)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        deadline = time.monotonic() + STREAM_FOR
        while time.monotonic() < deadline and not await request.is_disconnected():
            now = await run_in_threadpool(update, store, batch_id)
            if now is None:
                return
            yield f"data: {json.dumps(now)}\n\n"
            if now["done"]:
                yield "event: end\ndata: {}\n\n"
                return
            await asyncio.sleep(EVERY)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("/ui/batches/{batch_id}/report.csv")
def report_csv(request: Request, batch_id: str, _: SignedIn) -> StreamingResponse:
    """Every item as `phonebatch report --format csv` writes it."""
    store = store_of(request)
    found = _existing(store, batch_id)
    lines = csv_lines(iter_items(store, batch_id, found.counts.total))
    return _download(lines, "text/csv", f"phonebatch-{batch_id}.csv")


@router.get("/ui/batches/{batch_id}/report.json")
def report_json(request: Request, batch_id: str, _: SignedIn) -> StreamingResponse:
    """The report JSON of `phonebatch report --format json`, every item."""
    store = store_of(request)
    found = _existing(store, batch_id)
    chunks = json_chunks(found, iter_items(store, batch_id, found.counts.total))
    return _download(chunks, "application/json", f"phonebatch-{batch_id}.json")


def _download(body: Iterator[str], media_type: str, filename: str) -> StreamingResponse:
    disposition = f'attachment; filename="{filename}"'
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
    return StreamingResponse(chunked(body), media_type=media_type, headers=headers)


def chunked(pieces: Iterator[str], size: int = 1000) -> Iterator[str]:
    """`size` pieces at a time: a sync body is sent a piece per hop to a thread, and a
    hop per line made a 100,000-line CSV take half a minute."""
    batch: list[str] = []
    for piece in pieces:
        batch.append(piece)
        if len(batch) == size:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)
