"""The report store: what a batch is, what happened to each of its items.

`ReportStore` is the interface; `jobs.store.redis_store` is the real backend and
`jobs.store.memory_store` an in-memory one with the same behaviour (both pass
`tests/test_store_contract.py`). Recording an outcome is idempotent: an item moves out of
`pending` once, and the counters move only when it does.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson

from jobs.queue.priority import Priority
from jobs.store.guardrails import NO_GUARD, GuardRule


class BatchState(StrEnum):
    """Where a batch is in its life: queued, running, paused, or ended."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"  # held by `phonebatch pause`: nothing new is sent until `continue`
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ItemStatus(StrEnum):
    """What became of one item: pending until it has an outcome, then one of the others."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(ItemStatus) - {ItemStatus.PENDING}
COUNTED = ("pending", "succeeded", "failed", "skipped", "cancelled")


def new_batch_id(now: datetime | None = None) -> str:
    """Readable and sortable: `20261127-193400-3fa9c1`."""
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class BatchMode(StrEnum):
    """What a batch does to each number: update it, only report, or roll back."""

    UPDATE = "update"  # read, skip numbers already right (unless forced), PATCH
    DRY_RUN = "dry_run"  # read and report what would change; no PATCH
    ROLLBACK = "rollback"  # like update, but a number changed since is a conflict


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch record as the producer creates it, before any item is sent."""

    batch_id: str
    name: str
    source: str  # cli | api | schedule:NAME
    total: int
    parent_id: str | None = None
    webhook_url: str | None = None
    mode: BatchMode = BatchMode.UPDATE
    force: bool = False  # send even when a number is already in the target state
    read_first: bool = True  # GET each number first: skip no-ops, keep what was there
    rollback_of: str | None = None
    selecting: bool = False  # items come later, from a selector's listing
    queue: str = ""  # the workers' queue its tasks go to: theirs to resume if it stalls
    priority: Priority = Priority.NORMAL
    canary: int = 0  # send this many numbers, then pause (0: no canary)
    guard: GuardRule = NO_GUARD
    allow_overlap: bool = False  # may share numbers with other running batches


@dataclass(frozen=True, slots=True)
class ItemSeed:
    """A pending item as the producer creates it."""

    index: int
    row: int
    number_id: str
    body: str = "{}"  # the request body as JSON, kept for resume and retry
    expect: str | None = None  # rollback: the values the number should still hold (JSON)


class Claim(StrEnum):
    """What a worker may do with an item it is about to send."""

    CLAIMED = "claimed"  # send it: nobody else is
    RETAKEN = "retaken"  # send it; an earlier run held it and stopped without an outcome
    CANCELLED = "cancelled"  # the batch was cancelled: the item is now marked so
    PAUSED = "paused"  # the batch is paused: the item stays pending, unclaimed; park it
    DONE = "done"  # it has an outcome already
    BUSY = "busy"  # another run holds it (a duplicate delivery)
    MISSING = "missing"  # no such batch or item (expired)


@dataclass(frozen=True, slots=True)
class Counts:
    """A batch's counters: all its items, and how many have each status."""

    total: int = 0
    pending: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WebhookState:
    """Where the batch's summary goes when it ends, and how that went."""

    url: str
    # waiting -> pending (in the outbox) -> delivering -> delivered | failed; back to
    # pending when its deliverer died (another worker delivers it: at least once)
    status: str = "waiting"
    attempts: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch as the store holds it: its state, counters, times and the options it runs with."""

    batch_id: str
    name: str
    source: str
    state: BatchState
    counts: Counts
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    parent_id: str | None = None
    halted_reason: str | None = None  # why the batch stopped sending, e.g. a refused key
    active_at: float | None = None  # the last claim or outcome: a stalled batch goes quiet
    paused_at: float | None = None  # while paused: since when
    retried_by: tuple[str, ...] = ()  # batches made of this one's failed items
    webhook: WebhookState | None = None
    mode: BatchMode = BatchMode.UPDATE
    force: bool = False
    read_first: bool = True
    rollback_of: str | None = None
    selecting: bool = False
    queue: str = ""  # the workers' queue its tasks go to ('' before this was noted)
    resumed: int = 0  # times the workers found it stalled and resumed it by themselves
    resumed_at: float | None = None  # the last of those times
    priority: Priority = Priority.NORMAL
    canary: int = 0  # the numbers sent before the batch paused itself to be checked
    guard: GuardRule = NO_GUARD
    allow_overlap: bool = False
    paused_by: str | None = None  # "canary" or "guard" when the batch paused itself
    paused_reason: str | None = None  # and why, in words
    pauses: int = 0  # times it paused itself: tells one `batch.paused` webhook from another

    @property
    def done(self) -> bool:
        return self.state in (BatchState.COMPLETED, BatchState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker learned about one item."""

    status: ItemStatus
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    sent: dict[str, Any] | None = None  # the body as sent, secrets redacted
    details: dict[str, Any] = field(default_factory=dict)  # reason, changes, before


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item as stored: the number, its status and, once final, how it went."""

    index: int
    row: int
    number_id: str
    status: ItemStatus = ItemStatus.PENDING
    http_status: int | None = None
    attempts: int = 0
    error: str | None = None
    sent: dict[str, Any] | None = None
    finished_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        """The stored form: short keys would save little; plain names keep it debuggable."""
        data: dict[str, Any] = {"row": self.row, "id": self.number_id, "status": self.status}
        if self.status is not ItemStatus.PENDING:
            data |= {
                "http_status": self.http_status,
                "attempts": self.attempts,
                "error": self.error,
                "sent": self.sent,
                "finished_at": self.finished_at,
            }
        return orjson.dumps(data | self.extra).decode()

    @classmethod
    def decode(cls, index: int, text: str | bytes) -> ItemRecord:
        data = json.loads(text)
        known = {"row", "id", "status", "http_status", "attempts", "error", "sent", "finished_at"}
        return cls(
            index=index,
            row=data["row"],
            number_id=data["id"],
            status=ItemStatus(data["status"]),
            http_status=data.get("http_status"),
            attempts=data.get("attempts", 0),
            error=data.get("error"),
            sent=data.get("sent"),
            finished_at=data.get("finished_at"),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def with_outcome(self, outcome: Outcome, finished_at: float) -> ItemRecord:
        return ItemRecord(
            index=self.index,
            row=self.row,
            number_id=self.number_id,
            status=outcome.status,
            http_status=outcome.http_status,
            attempts=outcome.attempts,
            error=outcome.error,
            sent=outcome.sent,
            finished_at=finished_at,
            extra=dict(outcome.details),
        )


def guard_mark(record: ItemRecord) -> str:
    """What the failure guard counts of an outcome: '1' failed for good (an HTTP 4xx
    other than 429: the request itself is wrong, and sending the next ones like it will
    not help), '0' any other outcome, '' none (cancelled: nothing was tried)."""
    if record.status is ItemStatus.CANCELLED:
        return ""
    status = record.http_status
    permanent = record.status is ItemStatus.FAILED and status is not None and 400 <= status < 500
    return "1" if permanent and status != 429 else "0"


class StoreUnavailable(Exception):
    """The store's server cannot be reached; the message says where we looked."""


@dataclass(frozen=True, slots=True)
class SendRules:
    """What a batch says about sending its items: all a worker needs to know of it."""

    mode: BatchMode = BatchMode.UPDATE
    force: bool = False
    read_first: bool = True
    halted_reason: str | None = None
    canary: bool = False  # one of the batch's canary numbers: sent even once it pauses

    @classmethod
    def of(cls, status: BatchStatus, *, canary: bool = False) -> SendRules:
        return cls(status.mode, status.force, status.read_first, status.halted_reason, canary)


@dataclass(frozen=True, slots=True)
class Ticket:
    """The answer to a claim. For `CLAIMED` and `RETAKEN` it carries the item's record
    and the batch's rules, read in the same step (one round trip per item, not two), and
    the snapshot an earlier run kept before it sent the item (`keep_snapshot`), if one
    did; for `BUSY`, how long the other run's lease has left."""

    claim: Claim
    busy_for: float = 0.0
    item: ItemRecord | None = None
    rules: SendRules | None = None
    snapshot: dict[str, Any] | None = None


@dataclass(slots=True)
class Receipt:
    """The broker's own note that a message is being handled (kombu's Redis transport:
    an entry in its `unacked` hash and `unacked_index` sorted set, under `tag`).

    A store on the broker's Redis removes it in the step that records the item, so a
    recorded item's message is never delivered again, and sets `settled`: the broker's
    ack then has nothing left to do in Redis. A store without the broker ignores it."""

    index_key: str
    entries_key: str
    tag: str
    owners_key: str = ""  # who holds it (`jobs.queue.liveness`), if noted
    settled: bool = False


class ReportStore(Protocol):
    """Where batches and their items' outcomes are kept; the backends implement it."""

    @property
    def retention_seconds(self) -> int:
        """How long a batch's keys live: what keeps a batch's data keeps it as long."""
        ...

    def create_batch(
        self, batch: NewBatch, items: Iterable[ItemSeed], *, live: bool = True
    ) -> None:
        """Write the batch record and one pending record per item. With `live` False the
        batch is staged: nobody sees it (status, list, workers, resume) until `go_live`,
        and what a submitter that died left of it expires within the hour."""
        ...

    def go_live(self, batch_id: str) -> bool:
        """Make a staged batch live in one step; False if it was not staged (or is gone)."""
        ...

    def discard(self, batch_id: str) -> None:
        """Remove everything written of a batch (a submission that failed part way)."""
        ...

    def status(self, batch_id: str) -> BatchStatus | None:
        """The batch's state and counters, in constant time."""
        ...

    def record_outcome(
        self, batch_id: str, item: ItemRecord, keep_body: str | None = None,
        receipt: Receipt | None = None,
    ) -> bool:  # fmt: skip
        """Store a final outcome; False if the item already had one (nothing changes).

        `keep_body` replaces the kept request body: the sender passes it redacted, so
        secrets stay in Redis only while an item waits to be sent. `receipt`, the
        message's entry in the broker, goes in the same step whatever the answer."""
        ...

    def item(self, batch_id: str, index: int) -> ItemRecord | None: ...

    def note_auth_failure(self, batch_id: str, reason: str, limit: int) -> bool:
        """Count a refused key; at `limit`, halt the batch with `reason`. True if halted."""
        ...

    def halt(self, batch_id: str, reason: str) -> None:
        """Stop the batch from sending anything more, with the reason."""
        ...

    def claim(self, batch_id: str, index: int, lease: float, owner: str) -> Ticket:
        """Take the item for the run `owner` (a task id) for `lease` seconds, unless that
        makes no sense."""
        ...

    def release(self, batch_id: str, index: int) -> None:
        """Give a claim back (the item was handed back to the queue)."""
        ...

    def keep_snapshot(self, batch_id: str, index: int, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Keep the number's values from before the item's first send (what a rollback
        puts back), unless a run kept one already; returns the one kept. Called before
        the request, so a run that sends the item again (its outcome was lost: a killed
        worker, a failover) keeps the true previous values, not the ones sent. On Redis
        with replicas it returns once one replica has it too (`WAIT`)."""
        ...

    def cancel(self, batch_id: str) -> BatchStatus | None:
        """Stop the batch: every pending item nobody is sending now becomes cancelled
        (a paused batch's parked tasks are dropped: their items are among those)."""
        ...

    def state_of(self, batch_id: str) -> BatchState | None:
        """The batch's state alone: one cheap read, for a sender's check before a request."""
        ...

    def pause(self, batch_id: str) -> BatchStatus | None:
        """Hold a queued or running batch (`paused`): claims answer `PAUSED` from now on.
        An ended batch is left as it is; None if there is no such batch."""
        ...

    def park(self, batch_id: str, queue: str, message: str) -> bool:
        """Keep a paused batch's task message until `continue_batch`: True if kept; False
        if the batch is no longer paused, and the message went back on `queue` instead."""
        ...

    def parked(self, batch_id: str) -> list[str]:
        """The task messages kept for a paused batch."""
        ...

    def continue_batch(
        self, batch_id: str, queue: str, *, no_guard: bool = False
    ) -> tuple[bool, BatchStatus] | None:
        """Let a paused batch go on: back to `running` (`queued` if it had not started) and
        every parked message onto `queue`, in one step. Its canary is over, and its
        failure guard starts a fresh window (`no_guard`: is off from now on). None if
        there is no such batch; else whether it was paused (False: nothing changed) and
        its status afterwards."""
        ...

    def bodies(self, batch_id: str, indexes: list[int]) -> dict[int, str]:
        """The request bodies (JSON) of these items, as submitted."""
        ...

    def link_retry(self, parent_id: str, child_id: str) -> None: ...

    def expectation(self, batch_id: str, index: int) -> dict[str, Any] | None:
        """For a rollback item: the values its number should still hold."""
        ...

    def begin_selection(self, batch_id: str) -> bool:
        """Let one run add a selector batch's items: True for the first, False after."""
        ...

    def add_items(self, batch_id: str, items: list[ItemSeed]) -> BatchStatus | None:
        """A selector batch's items, found by its listing: all at once, then it runs."""
        ...

    def take_due_webhook(self, owner: str) -> str | None:
        """An outbox entry (`webhook_entry`: a batch that ended or paused itself, with a
        webhook to send), taken by one sender only: from the outbox to the deliveries in
        flight, noted as `owner`'s (a worker process), in one step. If `owner` dies before
        `record_webhook`, it goes back to the outbox (the Redis store's
        `return_lapsed_webhooks`)."""
        ...

    def record_webhook(
        self, entry: str, status: str, attempts: int, error: str | None, *, owner: str
    ) -> None:
        """A delivery's outcome (`delivered` or `failed`), and `owner`'s delivery in flight
        gone, in one step. A `failed` never overwrites a `delivered`."""
        ...

    def hold(
        self, batch_id: str, numbers: Iterable[tuple[str, int]], *, share: bool = False
    ) -> list[tuple[str, str]]:
        """Hold these numbers (number id, item index) for the batch: no other batch may
        change them while its item for them is pending. Returns the numbers other batches
        hold, with the holder; when there are any, nothing is taken (`share`: the free
        ones are taken all the same). A number is free again once its item has an
        outcome, or its batch is cancelled or gone."""
        ...

    def release_holds(self, batch_id: str, numbers: Iterable[tuple[str, int]]) -> None:
        """Give back these numbers' holds, where they are still this batch's."""
        ...

    def give_back_webhook(self, entry: str, owner: str) -> None:
        """`owner`'s delivery in flight, which ended without an outcome, back in the
        outbox (status `pending`) for any sender to take: in one step, and only while it
        is still `owner`'s."""
        ...

    def items(self, batch_id: str, start: int = 0, limit: int = 500) -> list[ItemRecord]:
        """Items `start` .. `start + limit - 1`, in the batch's order."""
        ...

    def list_batches(self, offset: int = 0, limit: int = 50) -> list[BatchStatus]:
        """Batches newest first."""
        ...


def iter_items(
    store: ReportStore,
    batch_id: str,
    total: int,
    *,
    page: int = 1000,
    only: frozenset[ItemStatus] | None = None,
) -> Iterator[ItemRecord]:
    """Every item of a batch, a page at a time: memory holds one page, whatever the size."""
    for start in range(0, total, page):
        for record in store.items(batch_id, start, page):
            if only is None or record.status in only:
                yield record
