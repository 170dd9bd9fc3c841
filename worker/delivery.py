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

from jobs.batch.diff import Change, changes, conflicts, snapshot
from jobs.batch.reads import MAX_AGE_SECONDS, Read
from jobs.batch.redaction import redact
from jobs.store.interface import (
    BatchMode,
    BatchState,
    Claim,
    ItemRecord,
    ItemStatus,
    Outcome,
    Receipt,
    ReportStore,
    SendRules,
)
from jobs.store.report import iso_time
from worker.errors import AuthError, DeliveryError
from worker.metrics import OUTCOMES, labelled
from worker.retry import Attempts, Deferred, Stopped
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
    read: Read | None = None  # the number's current values, from the batch's listing


class Sender(Protocol):
    """How an API call is attempted: retries, pacing, hand-back.

    `run` returns the call's result and the attempts so far, raises the last
    `DeliveryError` (with `attempts` set), or raises `Deferred`.
    """

    def run(
        self, call: Callable[[], T], attempts: Attempts, gate: Gate | None = None
    ) -> tuple[T, Attempts]: ...


Gate = Callable[[], None]  # runs right before each request; raises `Stopped` to send nothing
HandBack = Callable[[WorkItem, Deferred], None]
Park = Callable[[WorkItem, Attempts], None]  # keep a paused batch's item until it continues
HALTING = frozenset({BatchState.CANCELLED, BatchState.PAUSED})
CANCELLING = frozenset({BatchState.CANCELLED})


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
    park: Park,
    auth_failure_limit: int = 3,
    lease: float = 120.0,
    owner: str = "",
    receipt: Receipt | None = None,
    check_every: float = 0.1,
    max_read_age: float = MAX_AGE_SECONDS,
) -> ItemRecord | None:
    """Send one item and record its outcome; None if it has none yet or had one already.

    The item is claimed first (atomically, in the store): a cancelled batch's item is
    marked cancelled instead of sent, a paused batch's is parked (`park`), and a second
    delivery of the same task finds it taken or done and sends nothing. `receipt` (the
    message's entry in the broker) is settled with the outcome, in the same step. Before
    each request the batch's state is read again if more than `check_every` seconds went
    by since the claim or the last read (waits on the limiter, a backoff, a read): so no
    request starts more than `check_every` after a cancel or a pause, and a request that
    follows its claim at once costs no extra read."""
    claimed_at = time.monotonic()  # the claim reads the batch's state: the first check
    claimed = _claim(item, store, hand_back, park, lease, owner)
    if claimed is None:
        return None
    existing, rules, retaken, kept = claimed
    sent = redact(item.body)  # what reports and logs may show of the body, once per item
    # A canary number goes out even once the claim after the canary's paused the batch.
    halting = CANCELLING if rules.canary else HALTING
    gate = _state_gate(store, item.batch_id, check_every, claimed_at, halting)
    try:
        send = _Send(item, api, store, sender, rules, sent, retaken, gate, max_read_age, kept)
        outcome = send.outcome(auth_failure_limit)
    except Stopped as stopped:
        if stopped.state != BatchState.CANCELLED:  # paused: held until it continues
            store.release(item.batch_id, item.index)
            park(item, stopped.attempts)
            return None
        tried = stopped.attempts.updates
        outcome = Outcome(ItemStatus.CANCELLED, attempts=tried, sent=sent if tried else None)
    except Deferred as deferred:
        store.release(item.batch_id, item.index)
        hand_back(item, deferred)
        return None
    record = existing.with_outcome(outcome, finished_at=time.time())
    return _record(item, store, record, _without_secrets(item, sent), receipt)


def _record(
    item: WorkItem,
    store: ReportStore,
    record: ItemRecord,
    kept: str | None,
    receipt: Receipt | None,
) -> ItemRecord | None:
    """Record the outcome (once: None if another run recorded first) and the body to keep,
    settling the broker's message in the same step."""
    if not store.record_outcome(item.batch_id, record, keep_body=kept, receipt=receipt):
        log.info("another run recorded this item first; its outcome stands")
        return None
    labelled(OUTCOMES, record.status.value).inc()
    return record


def _claim(
    item: WorkItem, store: ReportStore, hand_back: HandBack, park: Park, lease: float, owner: str
) -> tuple[ItemRecord, SendRules, bool, dict[str, Any] | None] | None:
    """The item's record, its batch's rules, whether it was taken over from a run that
    stopped and the snapshot an earlier run kept before sending it; None when this run
    must not send it (parked, busy elsewhere, done, gone)."""
    ticket = store.claim(item.batch_id, item.index, lease, owner)
    if ticket.claim is Claim.PAUSED:
        park(item, item.attempts)
        return None
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
    return ticket.item, ticket.rules, ticket.claim is Claim.RETAKEN, ticket.snapshot


@dataclass(frozen=True, slots=True)
class _Send:
    """One run's attempt at an item: what it sends with, and what it checks first."""

    item: WorkItem
    api: VapiApi
    store: ReportStore
    sender: Sender
    rules: SendRules
    sent: dict[str, Any]  # the body as reports may show it
    retaken: bool = False  # taken over from a run that stopped before recording
    gate: Gate | None = None
    max_read_age: float = MAX_AGE_SECONDS
    # The number's values before an earlier run sent this item (it kept them first): the
    # true previous values, where a read now may see what that run sent.
    kept: dict[str, Any] | None = None

    def outcome(self, auth_failure_limit: int) -> Outcome:
        """The item's outcome; raises only to hand it back (`Deferred`, `Stopped`) or
        when Redis is away."""
        item, store = self.item, self.store
        if self.rules.halted_reason:
            error = self.rules.halted_reason
            return Outcome(ItemStatus.FAILED, attempts=item.attempts.total, error=error)
        try:
            return self.read_then_write()
        except AuthError as exc:
            reason = auth_halt_reason(exc, auth_failure_limit, item.batch_id)
            if store.note_auth_failure(item.batch_id, reason, auth_failure_limit):
                log.error("batch %s stopped: the API key was refused", item.batch_id)
            return _failed(exc, self.sent)
        except DeliveryError as exc:
            return _failed(exc, self.sent)
        except (Deferred, redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception as exc:  # a bug must fail the item visibly, not strand it
            log.exception("unexpected error while sending")
            return Outcome(
                ItemStatus.FAILED, attempts=item.attempts.total,
                error=f"internal error: {exc!r}", sent=self.sent,
            )  # fmt: skip

    def read_then_write(self) -> Outcome:
        """Read the number first (unless the batch said not to: from the batch's listing,
        or by GET), then decide: report only (dry run), leave it (already right, or
        changed since a rolled-back batch), or PATCH."""
        item, attempts = self.item, self.item.attempts
        details: dict[str, Any] = {}
        if self.rules.read_first:
            decided, attempts = self.decide(details)
            if decided is not None:
                return decided
        body = json.dumps(item.body, separators=(",", ":"))
        try:
            result, attempts = self.sender.run(
                lambda: self.api.update_phone_number(item.number_id, body), attempts, self.gate
            )
        except DeliveryError as exc:
            exc.attempts -= attempts.reads  # `attempts` in a report counts updates
            raise
        return Outcome(
            ItemStatus.SUCCEEDED, http_status=result.http_status, attempts=attempts.updates,
            sent=self.sent, details=details,
        )  # fmt: skip

    def decide(self, details: dict[str, Any]) -> tuple[Outcome | None, Attempts]:
        """Read the number and fill `details` (changes, when and how it was read, the
        snapshot); the outcome when no PATCH is to be sent, else None."""
        item, rules, kept = self.item, self.rules, self.kept
        seen, attempts = _current(
            item, self.api, self.sender, item.attempts, self.gate, self.max_read_age
        )
        current, diff = seen.values, changes(seen.values, item.body)
        shown = diff if kept is None else changes(kept, item.body)  # from before any send
        details |= {
            "changes": [c.as_dict() for c in shown], "in_target_state": not shown,
            "read_at": iso_time(seen.at), "read_by": seen.source,
        }  # fmt: skip
        if (self.retaken or kept is not None) and not diff and rules.mode is not BatchMode.DRY_RUN:
            # A run that stopped before recording (a killed worker, an outcome lost in a
            # failover) had sent this update: it succeeded, and counting it as skipped
            # would misreport the batch.
            details["reason"] = "sent by an earlier run that stopped before recording it"
            if kept is not None:
                details["before"] = kept
            status, tried = ItemStatus.SUCCEEDED, attempts.updates
        elif (skip := _skip_reason(item, self.store, rules, current, diff, details)) is None:
            before = snapshot(current, item.body) if kept is None else kept
            details["before"] = self.store.keep_snapshot(item.batch_id, item.index, before)
            return None, attempts
        else:
            details["reason"] = skip
            status, tried = ItemStatus.SKIPPED, attempts.total
        outcome = Outcome(
            status, http_status=seen.http_status, attempts=tried, sent=self.sent,
            details=details,
        )  # fmt: skip
        return outcome, attempts


@dataclass(frozen=True, slots=True)
class Seen:
    """A number's current values as read before its update, and how they were read."""

    values: dict[str, Any]
    http_status: int
    at: float  # Unix time of the read
    source: str  # "listing" (the batch's bulk read) or "get"


def _current(
    item: WorkItem,
    api: VapiApi,
    sender: Sender,
    attempts: Attempts,
    gate: Gate | None,
    max_read_age: float,
) -> tuple[Seen, Attempts]:
    """The number's current values: from the batch's listing if that read is fresh
    enough, else by GET (which counts as a read, not an update attempt)."""
    if item.read is not None and item.read.fresh(time.time(), max_read_age):
        return Seen(item.read.current, 200, item.read.at, "listing"), attempts
    before = attempts.total
    try:
        found, attempts = sender.run(lambda: api.get_phone_number(item.number_id), attempts, gate)
    except Deferred as deferred:
        deferred.attempts.reads += deferred.attempts.total - before
        raise
    attempts.reads += attempts.total - before  # a report's `attempts` counts updates
    values = found.payload if isinstance(found.payload, dict) else {}
    return Seen(values, found.http_status, time.time(), "get"), attempts


def _state_gate(
    store: ReportStore,
    batch_id: str,
    every: float,
    claimed_at: float,
    halting: frozenset[BatchState] = HALTING,
) -> Gate:
    """A check before each request: reads the batch's state (one HGET) once more than
    `every` seconds passed since the claim or the last read; raises `Stopped` when the
    batch is in one of the `halting` states (cancelled or paused)."""
    checked = claimed_at

    def gate() -> None:
        nonlocal checked
        now = time.monotonic()
        if now - checked <= every:
            return
        checked = now  # before the read: what it sees is at least this fresh
        state = store.state_of(batch_id)
        if state is not None and state in halting:
            raise Stopped(state)

    return gate


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
