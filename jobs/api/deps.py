"""What every route needs: the settings, the report store, the bearer token check, and
the errors they answer with. `create_api` puts the first two on `app.state`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from config import Settings
from jobs.api.guard import bearer_ok
from jobs.store.interface import BatchStatus
from jobs.store.redis_store import RedisReportStore


class ApiError(HTTPException):
    """An answer other than 2xx, with a one-sentence `detail`."""


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> RedisReportStore:
    store: RedisReportStore = request.app.state.store
    return store


def require_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """401 unless `Authorization: Bearer <PHONEBATCH_API_TOKEN>`; an API explicitly opened
    on localhost (no token) lets every request in."""
    given = (authorization or "").encode("latin-1", "replace")
    if not bearer_ok(given, request.app.state.token):
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )


Authorized = [Depends(require_token)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[RedisReportStore, Depends(get_store)]


def existing(store: RedisReportStore, batch_id: str) -> BatchStatus:
    """The batch's status, or 404."""
    status = store.status(batch_id)
    if status is None:
        raise ApiError(404, f"no batch {batch_id!r}")
    return status
