"""The webhook outbox of the in-memory store (`jobs.store.memory_store`): entries due,
in flight, and their states, as the Redis outbox scripts keep them (`jobs.store.outbox`)."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from jobs.store.guardrails import webhook_entry
from jobs.store.interface import BatchStatus


class MemoryOutbox:
    """The outbox half of `MemoryReportStore`; the store gives it its batches' statuses."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._webhooks_due: list[str] = []
        self._webhooks_delivering: dict[str, str] = {}  # entry -> owner
        self._pause_webhooks: dict[str, str] = {}  # batch id -> its pause notice's state

    def _status_of(self, batch_id: str) -> BatchStatus | None:
        raise NotImplementedError

    def _set_status(self, batch_id: str, status: BatchStatus) -> None:
        raise NotImplementedError

    def take_due_webhook(self, owner: str) -> str | None:
        with self._lock:
            while self._webhooks_due:
                taken = self._webhooks_due.pop(0)
                if self._webhook_state(taken) == "pending":
                    self._webhooks_delivering[taken] = owner
                    self._set_webhook(taken, status="delivering")
                    return taken
            return None

    def _webhook_state(self, entry: str) -> str | None:
        target = webhook_entry(entry)
        status = self._status_of(target.batch_id)
        if status is None or status.webhook is None:
            return None
        if target.paused:
            return self._pause_webhooks.get(target.batch_id)
        return status.webhook.status

    def _set_webhook(self, entry: str, **changes: Any) -> None:
        target = webhook_entry(entry)
        status = self._status_of(target.batch_id)
        if target.paused:
            self._pause_webhooks[target.batch_id] = changes["status"]
        elif status is not None and status.webhook is not None:
            webhook = replace(status.webhook, **changes)
            self._set_status(target.batch_id, replace(status, webhook=webhook))

    def record_webhook(
        self, entry: str, status: str, attempts: int, error: str | None, *, owner: str
    ) -> None:
        with self._lock:
            if self._webhooks_delivering.get(entry) == owner:
                del self._webhooks_delivering[entry]
            if entry in self._webhooks_due:
                self._webhooks_due.remove(entry)
            current = self._webhook_state(entry)
            if current is not None and (current != "delivered" or status == "delivered"):
                self._set_webhook(entry, status=status, attempts=attempts, error=error)

    def give_back_webhook(self, entry: str, owner: str) -> None:
        with self._lock:
            if self._webhooks_delivering.get(entry) != owner:
                return
            del self._webhooks_delivering[entry]
            if self._webhook_state(entry) == "delivering":
                self._set_webhook(entry, status="pending")
                self._webhooks_due.append(entry)

    def _queue_webhook(self, status: BatchStatus, *, paused: bool = False) -> BatchStatus:
        """A batch that ended (or `paused` itself) with a webhook: its entry in the outbox."""
        if status.webhook is None:
            return status
        if paused:
            self._pause_webhooks[status.batch_id] = "pending"
            if (notice := f"{status.batch_id}|paused") not in self._webhooks_due:
                self._webhooks_due.append(notice)
            return status
        if status.counts.pending <= 0 and status.webhook.status == "waiting":
            self._webhooks_due.append(status.batch_id)
            return replace(status, webhook=replace(status.webhook, status="pending"))
        return status
