"""Acting on a batch: cancel, pause and continue (as the CLI's commands of those names),
and the new batches that retry its failures or roll it back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobs.api.deps import ApiError, Authorized, SettingsDep, StoreDep, existing
from jobs.api.schemas import BatchStatus as BatchStatusModel
from jobs.api.schemas import RetryAccepted, RollbackAccepted, problems
from jobs.api.submissions import accepted
from jobs.operations.retries import NothingToRetry, retry_failed
from jobs.operations.rollback import NothingToRollBack, submit_rollback
from jobs.store.interface import BatchState, BatchStatus
from jobs.store.report import status_dict

router = APIRouter(tags=["batches"], dependencies=Authorized)

_CHANGED: dict[int | str, dict[str, Any]] = {
    200: {"model": BatchStatusModel, "description": "Done: the batch's status now."},
    409: {"model": BatchStatusModel, "description": "Nothing changed: the batch's status."},
}
CHANGED = _CHANGED | problems(401, 404, 503)


@router.post("/batches/{batch_id}/cancel", response_model=BatchStatusModel, responses=CHANGED)
def cancel_batch(batch_id: str, store: StoreDep) -> JSONResponse:
    """As `phonebatch cancel`: no request starts later; `409` if the batch had ended."""
    existing(store, batch_id)
    final = store.cancel(batch_id)
    return _changed(batch_id, final, final is not None and final.state is BatchState.CANCELLED)


@router.post("/batches/{batch_id}/pause", response_model=BatchStatusModel, responses=CHANGED)
def pause_batch(batch_id: str, store: StoreDep) -> JSONResponse:
    """As `phonebatch pause`: no new request starts; `409` if the batch had ended."""
    existing(store, batch_id)
    final = store.pause(batch_id)
    return _changed(batch_id, final, final is not None and final.state is BatchState.PAUSED)


@router.post("/batches/{batch_id}/continue", response_model=BatchStatusModel, responses=CHANGED)
def continue_batch(
    batch_id: str, settings: SettingsDep, store: StoreDep, no_guard: bool = False
) -> JSONResponse:
    """As `phonebatch continue` (`no_guard`: as `--no-guard`, the failure guard off for
    the rest of the batch); `409` if the batch was not paused."""
    existing(store, batch_id)
    answer = store.continue_batch(batch_id, settings.queue, no_guard=no_guard)
    return _changed(batch_id, answer and answer[1], bool(answer and answer[0]))


def _changed(batch_id: str, final: BatchStatus | None, done: bool) -> JSONResponse:
    """The answer to a cancel, pause or continue: the status, `409` if it changed nothing."""
    if final is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    return JSONResponse(status_dict(final), 200 if done else 409)


@router.post(
    "/batches/{batch_id}/rollback",
    status_code=202,
    response_model=RollbackAccepted,
    responses=problems(401, 404, 409, 503),
)
def rollback_batch(
    batch_id: str, settings: SettingsDep, store: StoreDep, force: bool = False
) -> JSONResponse:
    """Put back what the batch overwrote; numbers changed since are left alone unless
    forced. `409` when there is nothing to put back."""
    existing(store, batch_id)
    try:
        child, plan = submit_rollback(store, settings.queue, batch_id, force=force, source="api")
    except NothingToRollBack as exc:
        raise ApiError(409, str(exc)) from None
    return accepted(child, {"items": len(plan.items), "not_restored": plan.left_out})


@router.post(
    "/batches/{batch_id}/retry",
    status_code=202,
    response_model=RetryAccepted,
    responses=problems(401, 404, 409, 503),
)
def retry_batch(batch_id: str, settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """A new batch of the failed items; `409` when none failed."""
    existing(store, batch_id)
    try:
        made = retry_failed(store, settings.queue, batch_id)
    except NothingToRetry as exc:
        raise ApiError(409, str(exc)) from None
    # Rows whose secret fields are not kept once sent cannot be retried from here.
    return accepted(
        made.batch_id, {"items": made.count, "rows_left_out": made.rows_without_secrets}
    )
