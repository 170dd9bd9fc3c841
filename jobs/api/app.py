"""The HTTP API (`phonebatch api`): other systems post batches and follow them.

Every route but `/healthz` needs `Authorization: Bearer $PHONEBATCH_API_TOKEN`. A batch
is validated exactly as the CLI validates a file, whole, before anything is queued. The
routes live on routers by what they do: `submissions`, `batches`, `control`.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from config import Settings
from jobs.api import batches, control, submissions
from jobs.api.deps import Authorized, StoreDep
from jobs.api.guard import Guard
from jobs.api.metrics import BatchItemsCollector
from jobs.api.schemas import Health, problems
from jobs.operations.producer import Overlap
from jobs.store.interface import StoreUnavailable
from jobs.store.redis_store import RedisReportStore

OVERLAP_LISTED = 1000  # held numbers a refusal lists (its detail gives the count)


def create_api(
    settings: Settings,
    store: RedisReportStore,
    *,
    token: str | None,
    pages: Callable[[str], bool] | None = None,
    uploads: frozenset[tuple[str, str]] = frozenset(),
    docs_url: str | None = "/docs",
) -> FastAPI:
    """The API over `store`; `token` None only when opened on localhost on purpose.
    `pages` says which paths are browser pages (they check their own session, see
    `jobs.web`) and `uploads` which of their routes take a batch file."""
    api = FastAPI(
        title="phonebatch",
        version="0.1.0",
        description="Bulk updates of Vapi phone numbers: post a batch, follow it, read its report.",
        docs_url=docs_url,
    )
    api.state.settings, api.state.store, api.state.token = settings, store, token
    registry = CollectorRegistry()
    registry.register(BatchItemsCollector(lambda: store.list_batches(0, 50)))
    api.state.metrics = registry
    api.add_exception_handler(StoreUnavailable, _redis_down)
    api.add_exception_handler(redis.ConnectionError, _redis_down)
    api.add_exception_handler(Overlap, _overlap)
    api.add_api_route(
        "/healthz", healthz, tags=["health"],
        responses={200: {"model": Health}, 503: {"model": Health, "description": "No Redis."}},
    )  # fmt: skip
    api.add_api_route(
        "/metrics", metrics, tags=["health"], dependencies=Authorized, responses=problems(401),
        response_class=Response,
    )  # fmt: skip
    for router in (submissions.router, batches.router, control.router):
        api.include_router(router)
    # before any route reads a byte of the body
    api.add_middleware(Guard, token=token, pages=pages, uploads=uploads)
    return api


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "Redis is unavailable; try again shortly"}, 503)


async def _overlap(request: Request, exc: Exception) -> JSONResponse:
    """A batch refused (409) because running batches hold some of its numbers: which."""
    held = exc.held if isinstance(exc, Overlap) else []
    listed = [{"id": number, "batch_id": holder} for number, holder in held[:OVERLAP_LISTED]]
    return JSONResponse({"detail": str(exc), "held": listed}, 409)


def healthz(store: StoreDep) -> JSONResponse:
    """Whether the API reaches Redis; needs no token, so it says no more than that."""
    try:
        store.ping()
    except StoreUnavailable:
        return JSONResponse({"ok": False, "redis": "unavailable"}, 503)
    return JSONResponse({"ok": True, "redis": "ok"})


def metrics(request: Request) -> Response:
    """Prometheus metrics: this process's, and items by state of the 50 latest batches."""
    own: CollectorRegistry = request.app.state.metrics
    body = generate_latest(REGISTRY) + generate_latest(own)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
