"""Completion webhooks: the signed summary a batch POSTs when it ends. Pure.

The body is the batch's status JSON. Two headers go with it:

    X-Phonebatch-Timestamp: 1764270000
    X-Phonebatch-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

A receiver recomputes the HMAC over the raw body and refuses a timestamp older than a
few minutes (a replayed delivery). `verify` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-Phonebatch-Signature"
TIMESTAMP_HEADER = "X-Phonebatch-Timestamp"
DEFAULT_TOLERANCE = 300


def payload(summary: dict[str, Any]) -> bytes:
    return json.dumps({"event": "batch.finished", "batch": summary}, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def verify(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """Whether a delivery is genuine and fresh."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
