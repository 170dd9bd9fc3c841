"""`/docs`: Swagger UI over the API's OpenAPI document, from the copy shipped in this
package (`static/swagger-ui`), started by a script file of ours rather than the inline
script FastAPI's own page carries, so its policy needs no inline script either."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from jobs.web.render import TEMPLATES, root

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(request, "docs.html", {"root": root(request)})
