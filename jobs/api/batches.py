"""Reading batches: the list, one batch's status, and its report (the CLI's report JSON a
page at a time, or every item as a streamed CSV)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jobs.api.deps import Authorized, SettingsDep, StoreDep, existing
from jobs.api.schemas import BatchDetail, BatchPage, ReportPage, problems
from jobs.operations.recovery import is_stalled
from jobs.store.interface import ItemStatus, iter_items
from jobs.store.report import csv_lines, item_dict, status_dict

router = APIRouter(tags=["batches"], dependencies=Authorized)
MAX_OFFSET = 2**31 - 1  # past any batch or item: a larger one is a 422, not Redis's error


@router.get("/batches", response_model=BatchPage, responses=problems(401, 503))
def list_batches(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JSONResponse:
    """Batches, newest first."""
    batches = store.list_batches(offset, limit)
    more = len(batches) == limit
    return JSONResponse(
        {
            "batches": [status_dict(b) for b in batches],
            "next_offset": offset + limit if more else None,
        }
    )


@router.get("/batches/{batch_id}", response_model=BatchDetail, responses=problems(401, 404, 503))
def get_batch(batch_id: str, settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """A batch's state and counts, as `phonebatch status --json` prints them."""
    status = existing(store, batch_id)
    stalled = is_stalled(store.client, settings.queue, status, settings.claim_lease)
    return JSONResponse(status_dict(status) | {"stalled": stalled})


_REPORT_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ReportPage,
        "description": "JSON: the report a page at a time. CSV: every item, streamed.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}
REPORT_RESPONSES = _REPORT_OK | problems(401, 404, 503)


@router.get("/batches/{batch_id}/report", response_model=ReportPage, responses=REPORT_RESPONSES)
def get_report(
    batch_id: str,
    store: StoreDep,
    format_: Annotated[str, Query(alias="format", pattern="^(json|csv)$")] = "json",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    status: ItemStatus | None = None,
) -> Response:
    """The report JSON of `phonebatch report ID --format json`, key for key, with a page
    of its items (`offset`, `limit`, `next_offset`); or every item as a streamed CSV."""
    batch = existing(store, batch_id)
    only = frozenset({status}) if status else None
    if format_ == "csv":
        lines = csv_lines(iter_items(store, batch_id, batch.counts.total, only=only))
        disposition = f'attachment; filename="phonebatch-{batch_id}.csv"'
        return StreamingResponse(
            lines, media_type="text/csv", headers={"Content-Disposition": disposition}
        )
    page = [r for r in store.items(batch_id, offset, limit) if only is None or r.status in only]
    more = offset + limit < batch.counts.total
    paging = {"offset": offset, "limit": limit, "next_offset": offset + limit if more else None}
    return JSONResponse(status_dict(batch) | {"items": [item_dict(r) for r in page]} | paging)
