"""Auth first, body second: a pure ASGI middleware in front of every route.

A request without the bearer token is answered 401 before any of its body is read (a
route's own parameters would otherwise read and parse it first: a 250 MB body, or
malformed JSON answered 422 instead of 401). Then the body is bounded: a batch upload
(`POST /batches`) by `PHONEBATCH_API_MAX_UPLOAD_BYTES` as it streams (`upload.read_body`
counts it), every other route by `SMALL_BODY`, read here up to that much and refused with
413 past it, before any parser sees it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
UPLOAD = ("POST", "/batches")  # bounded by the upload limit while it streams
SMALL_BODY = 64 * 1024  # every other route's body: a selection is a few hundred bytes


class Guard:
    """Refuses a request without the token (401) or with too large a body (413) before
    the app reads a byte of it; `token` None lets every request in (opened on localhost)."""

    def __init__(
        self,
        app: App,
        token: str | None,
        *,
        pages: Callable[[str], bool] | None = None,
        uploads: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.app = app
        self.token = token
        # The browser pages check their own session cookie (never the bearer token, and
        # this guard never the cookie); their uploads are bounded as they stream.
        self.pages = pages or (lambda _: False)
        self.uploads = uploads | {UPLOAD}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        path = route_path(scope)
        if path not in OPEN_PATHS and not self.pages(path) and not self._authorized(headers):
            await _answer(send, 401, "a valid bearer token is required", bearer=True)
            return
        if (scope["method"], path) in self.uploads:
            await self.app(scope, receive, send)
            return
        declared = headers.get("content-length", b"")
        if declared.isdigit() and int(declared) > SMALL_BODY:
            await _answer(send, 413, f"the body is larger than {SMALL_BODY} bytes")
            return
        body = await _read_at_most(receive, SMALL_BODY)
        if body is None:
            await _answer(send, 413, f"the body is larger than {SMALL_BODY} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorized(self, headers: dict[str, bytes]) -> bool:
        return bearer_ok(headers.get("authorization", b""), self.token)


def route_path(scope: Scope) -> str:
    """The path without the prefix a reverse proxy serves us under (`--root-path`): the
    server puts that prefix in front of every path, and the routes do not know it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return path[len(root.rstrip("/")) :] or "/"
    return path


def bearer_ok(authorization: bytes, token: str | None) -> bool:
    """Whether an Authorization header carries the token (any header, with no token)."""
    if token is None:
        return True  # explicitly opened on localhost
    scheme, _, given = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given, token.encode())


async def _read_at_most(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: a disconnect, when it comes

    return replay


async def _answer(send: Send, status: int, detail: str, *, bearer: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
