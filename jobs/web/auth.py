"""Who may see a page and who may change something: the session cookie for every page,
and for every form that changes something its CSRF token and a same-site origin.

The JSON API never reads the cookie (its guard knows only the bearer token); the pages
never read the bearer token. A page asked for without a session answers a redirect to the
sign-in form and nothing else.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Form, HTTPException, Request

from jobs.api.guard import route_path
from jobs.web import session
from jobs.web.session import Session

SIGN_IN = "/ui/signin"


class SignInFirst(HTTPException):
    """No (valid) session: the handler answers with a redirect to the sign-in form."""

    def __init__(self, after: str) -> None:
        super().__init__(303, "sign in first")
        self.after = after


def web_key(request: Request) -> bytes:
    key: bytes = request.app.state.web_key
    return key


OPEN = Session(expires=2**62, nonce="opened-on-localhost")


def current_session(request: Request) -> Session | None:
    """The request's session; with no token (`--open-on-localhost`) everyone has one, as
    everyone may use the API (its forms still need the CSRF token: another site's page
    cannot read it)."""
    if request.app.state.token is None:
        return OPEN
    return session.read(web_key(request), request.cookies.get(session.COOKIE), time.time())


def signed_in(request: Request) -> Session:
    """The page's session; otherwise off to the sign-in form, coming back here after."""
    found = current_session(request)
    if found is None:
        path = route_path(request.scope)  # sign-in adds the proxy's prefix back
        after = path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInFirst(after)
    return found


def same_site(request: Request) -> bool:
    """Whether an unsafe request comes from one of our own pages: a browser says where a
    request comes from (Sec-Fetch-Site, Origin); a request that says nothing (curl) has
    no cookie of ours to abuse unless someone gave it one."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc == host


def changing(
    request: Request,
    found: Annotated[Session, Depends(signed_in)],
    csrf: Annotated[str | None, Form()] = None,
) -> Session:
    """A form that changes something: signed in, from our own pages, with its CSRF token."""
    if not same_site(request):
        raise HTTPException(403, "a form from another site is refused")
    if not session.csrf_ok(web_key(request), found, csrf):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
    return found


def back_to(after: str | None) -> str:
    """Where sign-in goes next: a path of this site only (never another host)."""
    if not after or not after.startswith("/") or after.startswith("//") or "\\" in after:
        return "/"
    return after


def sign_in_url(after: str) -> str:
    return f"{SIGN_IN}?next={quote(after, safe='/')}"


SignedIn = Annotated[Session, Depends(signed_in)]
Changing = Annotated[Session, Depends(changing)]
