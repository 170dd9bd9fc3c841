"""Deliver one item: send its PATCH under the retry policy, record its outcome once.

Plain functions over small interfaces (the API, the store, the policy), so tests call
them directly with a scripted transport and the in-memory store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from jobs.redaction import redact
from jobs.store import ItemRecord, ItemStatus, Outcome, ReportStore
from worker.errors import DeliveryError
from worker.vapi import ApiResult, VapiApi

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """What a task message carries: never the API key."""

    batch_id: str
    index: int
    row: int
    number_id: str
    body: dict[str, Any]


class SendPolicy(Protocol):
    """How an API call is attempted: the seam for retries and the rate limiter.

    `run` returns the call's result and the number of attempts it took, or raises the
    last `DeliveryError` with its `attempts` set.
    """

    def run(self, call: Callable[[], T]) -> tuple[T, int]: ...


class SingleAttempt:
    """One attempt, no retry."""

    def run(self, call: Callable[[], T]) -> tuple[T, int]:
        try:
            return call(), 1
        except DeliveryError as exc:
            exc.attempts = 1
            raise


def deliver(
    item: WorkItem, *, api: VapiApi, store: ReportStore, policy: SendPolicy
) -> ItemRecord | None:
    """Send one item and record its outcome; None if it had one already."""
    existing = store.item(item.batch_id, item.index)
    if existing is None:
        log.warning("no such item in the report store (expired?); nothing sent")
        return None
    if existing.status is not ItemStatus.PENDING:
        log.info("item already has an outcome (%s); not sent again", existing.status)
        return None
    outcome = _attempt(item, api, policy)
    record = existing.with_outcome(outcome, finished_at=time.time())
    if not store.record_outcome(item.batch_id, record):
        log.info("another run recorded this item first; its outcome stands")
        return None
    return record


def _attempt(item: WorkItem, api: VapiApi, policy: SendPolicy) -> Outcome:
    body = json.dumps(item.body, separators=(",", ":"))
    sent = redact(item.body)
    try:
        result, attempts = policy.run(lambda: api.update_phone_number(item.number_id, body))
    except DeliveryError as exc:
        return Outcome(
            status=ItemStatus.FAILED,
            http_status=exc.http_status,
            attempts=exc.attempts,
            error=exc.message,
            sent=sent,
        )
    return _succeeded(result, attempts, sent)


def _succeeded(result: ApiResult, attempts: int, sent: dict[str, Any]) -> Outcome:
    return Outcome(
        status=ItemStatus.SUCCEEDED, http_status=result.http_status, attempts=attempts, sent=sent
    )
