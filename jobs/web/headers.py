"""Security headers: a strict Content-Security-Policy on the pages (no inline script,
nothing from another origin) and a looser one of its own on /docs (Swagger UI sets inline
styles), both served only from this package's own files."""

from __future__ import annotations

from collections.abc import Callable

from jobs.api.guard import App, Message, Receive, Scope, Send, route_path

PAGES_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """A pure ASGI middleware adding the headers to the answers of the pages and /docs."""

    def __init__(self, app: App, pages: Callable[[str], bool]) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self._policy(route_path(scope))
        if policy is None:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", policy), *COMMON]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)

    def _policy(self, path: str) -> bytes | None:
        if path.startswith("/docs"):
            return DOCS_POLICY.encode()
        return PAGES_POLICY.encode() if self.pages(path) else None
