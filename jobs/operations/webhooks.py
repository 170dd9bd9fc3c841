"""Batch webhooks: the signed summary a batch POSTs when it ends (`batch.finished`) or
pauses itself (`batch.paused`: its canary is done, or its failure guard tripped). Pure.

The body is `{"event": ..., "delivery_id": ..., "batch": <the batch's status JSON>}`.
Three headers go with it:

    X-Phonebatch-Delivery: 0b5f6c1e-3f7a-5d2c-9e41-6a8b7c9d0e1f
    X-Phonebatch-Timestamp: 1764270000
    X-Phonebatch-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

A receiver recomputes the HMAC over the raw body and refuses a timestamp older than a
few minutes (a replayed delivery). `verify` does exactly that.

Webhooks are delivered at least once: a worker that dies while delivering leaves the
webhook to another, so a receiver may get it twice. The delivery id is derived from the
batch and the event only (`delivery_id`), never from the body or the attempt, so every
attempt and every redelivery carries the same one: a receiver drops one it has seen.
The header itself is not signed (the v1 scheme stays as receivers verify it today); the
same id is in the signed body, and `verify(..., delivery=...)` checks that they agree, so
a genuine body replayed under another batch's id cannot make a receiver drop that batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

DELIVERY_HEADER = "X-Phonebatch-Delivery"
SIGNATURE_HEADER = "X-Phonebatch-Signature"
TIMESTAMP_HEADER = "X-Phonebatch-Timestamp"
DEFAULT_TOLERANCE = 300
FINISHED = "batch.finished"
PAUSED = "batch.paused"  # the batch paused itself (its canary, its failure guard)
# Fixed for good: every delivery id ever sent is a UUID 5 in this namespace.
_DELIVERIES = uuid.UUID("6d0c2f0e-5b1a-4f43-9a57-8f3e2b7c1d90")


def delivery_id(batch_id: str, event: str = FINISHED, occurrence: int = 0) -> str:
    """The id every delivery of this batch's `event` carries, however often it is sent;
    an event a batch can have more than once (a pause) is told apart by `occurrence`."""
    name = f"{event}/{batch_id}" + (f"/{occurrence}" if occurrence else "")
    return str(uuid.uuid5(_DELIVERIES, name))


def payload(summary: dict[str, Any], event: str = FINISHED, occurrence: int = 0) -> bytes:
    body = {"event": event, "delivery_id": delivery_id(summary["batch_id"], event, occurrence)}
    return json.dumps(body | {"batch": summary}, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def headers(secret: str, timestamp: int, body: bytes, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery,
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
    *,
    delivery: str | None = None,
) -> bool:
    """Whether a delivery is genuine and fresh (and, given the `X-Phonebatch-Delivery`
    header, whether it is the id the signed body carries)."""
    if not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        return False
    return delivery is None or _signed_delivery(body) == delivery


def _signed_delivery(body: bytes) -> str | None:
    try:
        found = json.loads(body).get("delivery_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None
