"""Why a request to the Vapi API did not succeed, and whether trying again can help.

    DeliveryError
    ├── TransientError      the API or the network had a bad moment: try again later
    │   ├── RateLimited     429 (may carry Retry-After)
    │   ├── ServerError     408, 500, 502, 503, 504
    │   └── NetworkError    timeouts, refused or dropped connections
    └── PermanentError      the same request will fail the same way
        ├── AuthError       401, 403: the key is wrong for every number
        └── RejectedError   any other 4xx: 400 bad body, 404 unknown number, 409, 422

httpx exceptions and error responses are translated here, at the boundary, and
`is_retryable` is the one place that decides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class DeliveryError(Exception):
    """Raised when a request to the API did not succeed; the subclass says if retrying helps."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.attempts = 0  # set by the retry policy that gave up


class TransientError(DeliveryError):
    """Raised when the API or the network had a bad moment: the same request may succeed."""


class RateLimited(TransientError):
    """Raised on a 429; `retry_after` holds the server's Retry-After in seconds, if usable."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, http_status=429)
        self.retry_after = retry_after


class ServerError(TransientError):
    """Raised on a 408 or a 5xx answer."""


class NetworkError(TransientError):
    """Raised when no answer came: a timeout, or a refused or dropped connection."""


class PermanentError(DeliveryError):
    """Raised when the same request would fail the same way again: not retried."""


class AuthError(PermanentError):
    """Raised on a 401 or 403: the key is wrong for every number, not just this one."""


class RejectedError(PermanentError):
    """Raised on any other 4xx: a bad body, an unknown number, a conflict."""


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


def api_error_message(payload: Any, fallback: str) -> str:
    """The API's own words: `{"message": str | [str], "error": str, "statusCode": n}`."""
    if isinstance(payload, dict):
        message = payload.get("message")
        if isinstance(message, list) and message:
            return "; ".join(str(m) for m in message)
        if isinstance(message, str) and message:
            return message
        if isinstance(payload.get("error"), str):
            return str(payload["error"])
    return fallback


def _payload(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delay-seconds or an HTTP date; None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def error_for_response(response: httpx.Response) -> DeliveryError:
    """The error an unsuccessful response stands for."""
    status = response.status_code
    reason = response.reason_phrase or "error"
    message = api_error_message(_payload(response), f"HTTP {status} {reason}")
    if status == 429:
        return RateLimited(
            message, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status in TRANSIENT_STATUSES or status >= 500:
        return ServerError(message, http_status=status)
    if status in (401, 403):
        return AuthError(message, http_status=status)
    return RejectedError(message, http_status=status)


def error_for_exception(exc: httpx.HTTPError) -> DeliveryError:
    """The error a failed exchange stands for (no response, or a broken one)."""
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(f"timed out: {type(exc).__name__}")
    if isinstance(exc, httpx.TransportError):
        return NetworkError(f"connection failed: {exc or type(exc).__name__}")
    return NetworkError(f"request failed: {exc or type(exc).__name__}")
