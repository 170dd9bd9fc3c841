"""Deliver one item: send its PATCH under the retry policy, record its outcome once.

Plain functions over small interfaces (the API, the store, the sender), so tests call
them directly with a scripted transport and the in-memory store.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis

from jobs.diff import Change, changes, conflicts, snapshot
from jobs.metrics import OUTCOMES, labelled
from jobs.redaction import redact
from jobs.store import (
    BatchMode,
    Claim,
    ItemRecord,
    ItemStatus,
    Outcome,
    Receipt,
    ReportStore,
    SendRules,
)
from worker.errors import AuthError, DeliveryError
from worker.retry import Attempts, Deferred
from worker.vapi import VapiApi

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
    attempts: Attempts = field(default_factory=Attempts)


class Sender(Protocol):
    """How an API call is attempted: retries, pacing, hand-back.

    `run` returns the call's result and the attempts so far, raises the last
    `DeliveryError` (with `attempts` set), or raises `Deferred`.
    """

    def run(self, call: Callable[[], T], attempts: Attempts) -> tuple[T, Attempts]: ...


HandBack = Callable[[WorkItem, Deferred], None]


def auth_halt_reason(error: AuthError, limit: int, batch_id: str) -> str:
    return (
        f"not attempted: the Vapi API refused the key {limit} times "
        f"(HTTP {error.http_status}: {error.message}). Set VAPI_API_KEY on the workers to "
        f"your Vapi private key, restart them, then run: phonebatch retry {batch_id}"
    )


def deliver(
    item: WorkItem,
    *,
    api: VapiApi,
    store: ReportStore,
    sender: Sender,
    hand_back: HandBack,
    auth_failure_limit: int = 3,
    lease: float = 120.0,
    owner: str = "",
    receipt: Receipt | None = None,
) -> ItemRecord | None:
    """Send one item and record its outcome; None if it has none yet or had one already.

    The item is claimed first (atomically, in the store): a cancelled batch's item is
    marked cancelled instead of sent, and a second delivery of the same task finds it
    taken or done and sends nothing. `receipt` (the message's entry in the broker) is
    settled with the outcome, in the same step."""
    ticket = store.claim(item.batch_id, item.index, lease, owner)
    if ticket.claim is Claim.BUSY:
        # Another run holds it (a duplicate delivery): come back once its lease is over,
        # to find it done or to take it over. Never drop the task here.
        hand_back(item, Deferred(ticket.busy_for + 1.0, item.attempts))
        return None
    if ticket.item is None or ticket.rules is None:
        if ticket.claim is Claim.MISSING:
            log.warning("no such item in the report store (expired?); nothing sent")
        else:
            log.info("item not sent: %s", ticket.claim.value)
        return None
    existing, rules = ticket.item, ticket.rules
    retaken = ticket.claim is Claim.RETAKEN
    sent = redact(item.body)  # what reports and logs may show of the body, once per item
    try:
        outcome = _attempt(item, api, store, sender, rules, sent, auth_failure_limit, retaken)
    except Deferred as deferred:
        store.release(item.batch_id, item.index)
        hand_back(item, deferred)
        return None
    record = existing.with_outcome(outcome, finished_at=time.time())
    kept = _without_secrets(item, sent)
    if not store.record_outcome(item.batch_id, record, keep_body=kept, receipt=receipt):
        log.info("another run recorded this item first; its outcome stands")
        return None
    labelled(OUTCOMES, record.status.value).inc()
    return record


def _attempt(
    item: WorkItem,
    api: VapiApi,
    store: ReportStore,
    sender: Sender,
    rules: SendRules,
    sent: dict[str, Any],
    auth_failure_limit: int,
    retaken: bool = False,
) -> Outcome:
    if rules.halted_reason:
        return Outcome(ItemStatus.FAILED, attempts=item.attempts.total, error=rules.halted_reason)
    try:
        return _read_then_write(item, api, store, sender, rules, sent, retaken)
    except AuthError as exc:
        reason = auth_halt_reason(exc, auth_failure_limit, item.batch_id)
        if store.note_auth_failure(item.batch_id, reason, auth_failure_limit):
            log.error("batch %s stopped: the API key was refused", item.batch_id)
        return _failed(exc, sent)
    except DeliveryError as exc:
        return _failed(exc, sent)
    except (Deferred, redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception as exc:  # a bug must fail the item visibly, not strand it
        log.exception("unexpected error while sending")
        return Outcome(
            ItemStatus.FAILED, attempts=item.attempts.total, error=f"internal error: {exc!r}",
            sent=sent,
        )  # fmt: skip


def _read_then_write(
    item: WorkItem,
    api: VapiApi,
    store: ReportStore,
    sender: Sender,
    rules: SendRules,
    sent: dict[str, Any],
    retaken: bool,
) -> Outcome:
    """GET the number first (unless the batch said not to), then decide: report only
    (dry run), leave it (already right, or changed since a rolled-back batch), or PATCH."""
    attempts = item.attempts
    details: dict[str, Any] = {}
    if rules.read_first:
        before = attempts.total
        try:
            found, attempts = sender.run(lambda: api.get_phone_number(item.number_id), attempts)
        except Deferred as deferred:
            deferred.attempts.reads += deferred.attempts.total - before
            raise
        attempts.reads += attempts.total - before  # a report's `attempts` counts updates
        current = found.payload if isinstance(found.payload, dict) else {}
        diff = changes(current, item.body)
        details = {"changes": [c.as_dict() for c in diff], "in_target_state": not diff}
        skip = _skip_reason(item, store, rules, current, diff, details)
        if skip is not None and retaken and not diff and rules.mode is not BatchMode.DRY_RUN:
            # A run that stopped before recording (a killed worker) had sent this update:
            # it succeeded, and counting it as skipped would misreport the batch.
            details["reason"] = "sent by an earlier run that stopped before recording it"
            return Outcome(
                ItemStatus.SUCCEEDED, http_status=found.http_status, attempts=attempts.updates,
                sent=sent, details=details,
            )  # fmt: skip
        if skip is not None:
            details["reason"] = skip
            return Outcome(
                ItemStatus.SKIPPED, http_status=found.http_status, attempts=attempts.total,
                sent=sent, details=details,
            )  # fmt: skip
        details["before"] = snapshot(current, item.body)
    body = json.dumps(item.body, separators=(",", ":"))
    try:
        result, attempts = sender.run(
            lambda: api.update_phone_number(item.number_id, body), attempts
        )
    except DeliveryError as exc:
        exc.attempts -= attempts.reads  # `attempts` in a report counts updates
        raise
    return Outcome(
        ItemStatus.SUCCEEDED, http_status=result.http_status, attempts=attempts.updates,
        sent=sent, details=details,
    )  # fmt: skip


def _skip_reason(
    item: WorkItem,
    store: ReportStore,
    rules: SendRules,
    current: dict[str, Any],
    diff: list[Change],
    details: dict[str, Any],
) -> str | None:
    if rules.mode is BatchMode.DRY_RUN:
        return "dry run: nothing sent"
    if rules.mode is BatchMode.ROLLBACK and not rules.force:
        clash = conflicts(current, store.expectation(item.batch_id, item.index) or {})
        if clash:
            details["conflicts"] = [c.as_dict() for c in clash]
            fields = ", ".join(c.field for c in clash)
            return f"conflict: {fields} changed since; left alone (--force overwrites)"
    if not diff and not rules.force:
        return "already in the target state"
    return None


def _without_secrets(item: WorkItem, redacted: dict[str, Any]) -> str | None:
    """The body to keep once the item is sent: redacted, if it held a secret."""
    return json.dumps(redacted, separators=(",", ":")) if redacted != item.body else None


def _failed(exc: DeliveryError, sent: dict[str, Any]) -> Outcome:
    return Outcome(
        ItemStatus.FAILED,
        http_status=exc.http_status,
        attempts=exc.attempts,
        error=exc.message,
        sent=sent,
    )
