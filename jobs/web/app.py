"""`phonebatch api` with its pages: the JSON API (`jobs.api`) and the browser pages on one
process, one token and one report store.

Pages are `/` and everything under `/ui/`; every other path is the JSON API's, which
answers only the bearer token. Every page answer carries a Content-Security-Policy that
allows no inline script and nothing from another origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from config import Settings
from jobs.api.app import create_api
from jobs.api.guard import route_path
from jobs.store.redis_store import RedisReportStore
from jobs.web import actions, live, pages, signin
from jobs.web.auth import SignInFirst, sign_in_url
from jobs.web.docs import router as docs_router
from jobs.web.headers import SecurityHeaders
from jobs.web.render import page, root
from jobs.web.session import derive_key

STATIC = Path(__file__).parent / "static"
UPLOADS = frozenset({("POST", actions.NEW)})


def is_page(path: str) -> bool:
    return path == "/" or path.startswith("/ui/")


def create_app(settings: Settings, store: RedisReportStore, *, token: str | None) -> FastAPI:
    """The JSON API and the pages over `store`; `token` None only when opened on localhost."""
    app = create_api(settings, store, token=token, pages=is_page, uploads=UPLOADS, docs_url=None)
    app.state.web_key = derive_key(token)
    for router in (signin.router, pages.router, actions.router, live.router, docs_router):
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SignInFirst, _sign_in_first)
    app.add_exception_handler(HTTPException, _problem)
    app.add_middleware(SecurityHeaders, pages=is_page)
    return app


async def _sign_in_first(request: Request, exc: Exception) -> Response:
    after = exc.after if isinstance(exc, SignInFirst) else "/"
    return RedirectResponse(root(request) + sign_in_url(after), 303)


async def _problem(request: Request, exc: Exception) -> Response:
    """A page's error as a page; the JSON API's as JSON, as before."""
    assert isinstance(exc, HTTPException)
    if not is_page(route_path(request.scope)):
        return await http_exception_handler(request, exc)
    context = {"status": exc.status_code, "detail": exc.detail}
    return page(request, "error.html", context, exc.status_code)
