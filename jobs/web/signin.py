"""Signing in with PHONEBATCH_API_TOKEN, and out again."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jobs.web import session
from jobs.web.auth import SIGN_IN, Changing, back_to, same_site, web_key
from jobs.web.render import page, root

router = APIRouter(include_in_schema=False)


@router.get(SIGN_IN)
def sign_in_form(request: Request) -> HTMLResponse:
    after = back_to(request.query_params.get("next"))
    return page(request, "signin.html", {"after": after, "problem": None})


@router.post(SIGN_IN)
def sign_in(
    request: Request,
    token: Annotated[str, Form()] = "",
    after: Annotated[str, Form()] = "/",
) -> Response:
    """A right token: a session cookie and on to the page asked for; else the form again."""
    if not same_site(request):
        raise HTTPException(403, "a form from another site is refused")
    if not session.token_ok(token, request.app.state.token):
        problem = "That is not the API token (PHONEBATCH_API_TOKEN)."
        return page(request, "signin.html", {"after": back_to(after), "problem": problem}, 401)
    answer = RedirectResponse(root(request) + back_to(after), 303)
    answer.set_cookie(
        session.COOKIE,
        session.issue(web_key(request), time.time()),
        max_age=session.LIFETIME,
        path=(root(request) or "") + "/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return answer


@router.post("/ui/signout")
def sign_out(request: Request, _: Changing) -> Response:
    answer = RedirectResponse(root(request) + SIGN_IN, 303)
    answer.delete_cookie(session.COOKIE, path=(root(request) or "") + "/")
    return answer
