"""A batch's hash as the Redis store keeps it, read back into a `BatchStatus`."""

from __future__ import annotations

from typing import Any

from jobs.queue.priority import Priority
from jobs.store.guardrails import NO_GUARD, GuardRule
from jobs.store.interface import COUNTED, BatchMode, BatchState, BatchStatus, Counts, WebhookState


def as_float(value: Any) -> float | None:
    return float(value) if value not in (None, "", b"") else None


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_status(batch_id: str, raw: dict[Any, Any]) -> BatchStatus:
    data = {as_text(k): as_text(v) for k, v in raw.items()}
    counts = Counts(total=int(data.get("total", 0)), **{c: int(data.get(c, 0)) for c in COUNTED})
    return BatchStatus(
        batch_id=batch_id,
        name=data.get("name", ""),
        source=data.get("source", ""),
        state=BatchState(data.get("state", "queued")),
        counts=counts,
        created_at=as_float(data.get("created_at")) or 0.0,
        started_at=as_float(data.get("started_at")),
        finished_at=as_float(data.get("finished_at")),
        parent_id=data.get("parent_id") or None,
        halted_reason=data.get("halted_reason") or None,
        active_at=as_float(data.get("active_at")),
        paused_at=as_float(data.get("paused_at")),
        retried_by=tuple(c for c in data.get("retried_by", "").split(",") if c),
        webhook=_webhook(data),
        mode=BatchMode(data.get("mode") or "update"),
        force=data.get("force") == "1",
        read_first=data.get("read_first", "1") == "1",
        rollback_of=data.get("rollback_of") or None,
        selecting=data.get("selecting") in ("1", "2"),
        queue=data.get("queue", ""),
        resumed=int(data.get("resumed") or 0),
        resumed_at=as_float(data.get("resumed_at")),
        priority=Priority(data.get("priority") or "normal"),
        canary=int(data.get("canary") or 0),
        guard=_guard(data),
        allow_overlap=data.get("allow_overlap") == "1",
        paused_by=data.get("paused_by") or None,
        paused_reason=data.get("paused_reason") or None,
        pauses=int(data.get("pauses") or 0),
    )


def _guard(data: dict[str, str]) -> GuardRule:
    window = int(data.get("guard_window") or 0)
    if window <= 0:
        return NO_GUARD
    return GuardRule(threshold=float(data.get("guard_threshold") or 0), window=window)


def _webhook(data: dict[str, str]) -> WebhookState | None:
    url = data.get("webhook_url")
    if not url:
        return None
    return WebhookState(
        url=url,
        status=data.get("webhook_status") or "waiting",
        attempts=int(data.get("webhook_attempts") or 0),
        error=data.get("webhook_error") or None,
    )
