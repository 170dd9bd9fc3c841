"""The pages that read: the list of batches and one batch (its items a page at a time)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from jobs.store.interface import BatchStatus, ItemRecord, ItemStatus
from jobs.store.keys import batch_key
from jobs.store.pace import read_paces
from jobs.store.redis_store import RedisReportStore
from jobs.store.report import item_dict, status_dict
from jobs.store.timeline import read as read_timeline
from jobs.web.auth import SignedIn
from jobs.web.render import page
from jobs.web.views import PAGE_SIZE, STATES, live, pages

router = APIRouter(include_in_schema=False)
MAX_OFFSET = 2**31 - 1
SCAN_LIMIT = 5000  # items (or batches) one filtered page reads at most before it stops


def store_of(request: Request) -> RedisReportStore:
    store: RedisReportStore = request.app.state.store
    return store


@router.get("/")
def batches(
    request: Request,
    _: SignedIn,
    state: Annotated[str | None, Query(pattern="^[a-z]*$")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    """Batches newest first, a page at a time; with `state`, only batches in it."""
    wanted = state if state in STATES else None
    found, next_offset = _batches(store_of(request), wanted, offset)
    rows = [(status_dict(b), _percent(b)) for b in found]
    paging = {"previous": max(0, offset - PAGE_SIZE) if offset else None, "next": next_offset}
    context = {"rows": rows, "state": wanted, "states": STATES, "paging": paging}
    return page(request, "batches.html", context)


def _batches(
    store: RedisReportStore, state: str | None, offset: int
) -> tuple[list[BatchStatus], int | None]:
    """A page of batches from `offset` (in the unfiltered list), and where the next
    starts; a filter reads on until the page is full or `SCAN_LIMIT` batches were read."""
    found: list[BatchStatus] = []
    at = offset
    while len(found) < PAGE_SIZE and at - offset < SCAN_LIMIT:
        chunk = store.list_batches(at, PAGE_SIZE)
        for n, batch in enumerate(chunk):
            if state is None or batch.state.value == state:
                found.append(batch)
                if len(found) == PAGE_SIZE:
                    return found, at + n + 1
        if len(chunk) < PAGE_SIZE:
            return found, None
        at += PAGE_SIZE
    return found, at


def _percent(status: BatchStatus) -> int:
    total = status.counts.total
    return 100 if total == 0 else (total - status.counts.pending) * 100 // total


@router.get("/ui/batches/{batch_id}")
def batch(
    request: Request,
    batch_id: str,
    _: SignedIn,
    status: ItemStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    note: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    """One batch: live counts, chart, limiter, webhook, actions, and a page of its items."""
    store = store_of(request)
    found = store.status(batch_id)
    if found is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    items, next_offset = _items(store, found, status, offset)
    now = live(found, time.time(), read_paces(store.client), read_timeline(store.client, batch_id))
    context = {
        "batch": _with_newer_fields(store, status_dict(found)),
        "live": now,
        "items": [_item_view(r) for r in items],
        "filter": status.value if status else None,
        "statuses": [s.value for s in ItemStatus],
        "paging": pages(offset, PAGE_SIZE, None) | {"next": next_offset},
        "note": NOTES.get(note or ""),
        "shows_diff": found.read_first,
    }
    return page(request, "batch.html", context)


NOTES = {
    "paused": "Paused: no new request starts until you continue.",
    "continued": "Continued.",
    "cancelled": "Cancelled: no request starts any more.",
    "unchanged": "Nothing changed: the batch was not in a state that allows it.",
    "retry": "A new batch of the failed items was queued: this is it.",
    "rollback": "A rollback was queued: this is it. Numbers changed since are left alone.",
    "created": "Submitted: it runs as workers take its items.",
}


NEWER_FIELDS = ("priority", "paused_reason", "paused_by", "canary")


def _with_newer_fields(store: RedisReportStore, shown: dict[str, Any]) -> dict[str, Any]:
    """The status, with the fields newer stores keep (priority, why it paused itself, the
    canary) read raw from the batch hash when this release's status does not carry them,
    so the page shows them either way; a status that has them wins."""
    missing = [n for n in NEWER_FIELDS if n not in shown]
    if not missing:
        return shown
    raw = store.client.hmget(batch_key(shown["batch_id"]), missing)
    found: dict[str, Any] = {
        n: v.decode() for n, v in zip(missing, raw, strict=True) if isinstance(v, bytes)
    }
    if "canary" in found:
        found["canary"] = int(found["canary"]) if found["canary"].isdigit() else 0
    return shown | found


def _items(
    store: RedisReportStore, status: BatchStatus, only: ItemStatus | None, offset: int
) -> tuple[list[ItemRecord], int | None]:
    """A page of items from `offset`, and where the next page starts (None at the end).
    Filtered, it reads on a page at a time until it has `PAGE_SIZE` or read
    `SCAN_LIMIT` items: never the whole batch."""
    total = status.counts.total
    if only is None:
        found = store.items(status.batch_id, offset, PAGE_SIZE)
        return found, offset + PAGE_SIZE if offset + PAGE_SIZE < total else None
    kept: list[ItemRecord] = []
    at = offset
    while at < total and at - offset < SCAN_LIMIT:
        for record in store.items(status.batch_id, at, 500):
            if record.status is only:
                kept.append(record)
                if len(kept) == PAGE_SIZE:
                    return kept, record.index + 1
        at += 500
    return kept, at if at < total else None


def _item_view(record: ItemRecord) -> dict[str, Any]:
    data = item_dict(record)
    data["changes"] = data.get("changes") or []
    data["conflicts"] = data.get("conflicts") or []
    return data
