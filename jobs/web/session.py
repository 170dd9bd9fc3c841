"""Sessions of the browser pages: a signed, expiring cookie and the CSRF token bound to it.
Pure: keys and clocks in, strings out.

The cookie holds `<expiry>.<nonce>.<signature>`, signed with a key derived from
PHONEBATCH_API_TOKEN (so changing the token signs everyone out, and the token itself never
leaves the server). A form's CSRF token is a second signature of the same nonce: a page
from another site can make the browser send the cookie (or, with SameSite=Strict, not
even that) but cannot read the token out of one of our pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "phonebatch_session"
LIFETIME = 8 * 3600  # a working day; then sign in again


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: when its cookie stops counting, and the nonce it was given."""

    expires: int
    nonce: str


def derive_key(token: str | None) -> bytes:
    """The signing key: from the API token, or (opened on localhost, no token) one made up
    for this process only."""
    if token is None:
        return secrets.token_bytes(32)
    return hmac.new(token.encode(), b"phonebatch web session v1", hashlib.sha256).digest()


def _sign(key: bytes, purpose: str, text: str) -> str:
    return hmac.new(key, f"{purpose}\n{text}".encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, now: float, lifetime: int = LIFETIME) -> str:
    """A new session's cookie value."""
    body = f"{int(now) + lifetime}.{secrets.token_hex(16)}"
    return f"{body}.{_sign(key, 'session', body)}"


def read(key: bytes, cookie: str | None, now: float) -> Session | None:
    """The session a cookie value carries, or None when it is missing, forged or expired."""
    if not cookie:
        return None
    expires, _, rest = cookie.partition(".")
    nonce, _, signature = rest.partition(".")
    if not expires.isdigit() or not nonce or not signature:
        return None
    if not hmac.compare_digest(signature, _sign(key, "session", f"{expires}.{nonce}")):
        return None
    if int(expires) <= now:
        return None
    return Session(int(expires), nonce)


def csrf_token(key: bytes, session: Session) -> str:
    """The token every form of this session carries."""
    return _sign(key, "csrf", session.nonce)


def csrf_ok(key: bytes, session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(str(given), csrf_token(key, session))


def token_ok(given: str, token: str | None) -> bool:
    """Whether a sign-in form's token is PHONEBATCH_API_TOKEN (any, opened on localhost)."""
    if token is None:
        return True
    return hmac.compare_digest(given.encode(), token.encode())
