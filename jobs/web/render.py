"""The templates and what every page gets: the site's root path (behind a proxy that
mounts us under a prefix), the session's CSRF token, the current path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from jobs.web import session
from jobs.web.auth import current_session, web_key
from jobs.web.views import duration, shown_value

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["duration"] = duration
TEMPLATES.env.filters["shown"] = shown_value


def root(request: Request) -> str:
    """The path prefix the site is served under ('' unless a proxy mounts it deeper)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    found = current_session(request)
    csrf = session.csrf_token(web_key(request), found) if found else ""
    common = {"root": root(request), "csrf": csrf, "signed_in": found is not None}
    return TEMPLATES.TemplateResponse(request, name, common | context, status_code=status_code)
