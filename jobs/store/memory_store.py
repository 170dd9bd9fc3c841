"""The report store in process memory: the same behaviour as Redis, for tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from jobs.store.guardrails import NO_GUARD, STAGED_HOLD_SECONDS
from jobs.store.interface import (
    BatchState,
    BatchStatus,
    Claim,
    Counts,
    ItemRecord,
    ItemSeed,
    ItemStatus,
    NewBatch,
    Receipt,
    SendRules,
    Ticket,
    WebhookState,
    guard_mark,
)
from jobs.store.memory_outbox import MemoryOutbox


@dataclass
class _Batch:
    status: BatchStatus
    items: dict[int, ItemRecord] = field(default_factory=dict)
    bodies: dict[int, str] = field(default_factory=dict)
    claims: dict[int, tuple[float, str]] = field(default_factory=dict)  # lease expiry, owner
    expect: dict[int, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[int, str] = field(default_factory=dict)  # JSON, as Redis keeps them
    auth_failures: int = 0
    selection_begun: bool = False
    parked: list[str] = field(default_factory=list)  # newest first, as LPUSH keeps them
    parked_queue: str | None = None  # the workers' queue the parked messages came from
    canary_left: int | None = None  # numbers the canary may still take (None: no canary)
    window: list[bool] = field(default_factory=list)  # the guard's: failed for good, newest first


class MemoryReportStore(MemoryOutbox):
    """A `ReportStore` in a dict behind one lock, with queues as lists: for tests."""

    retention_seconds = 30 * 86_400  # nothing expires in memory; said for the protocol

    def __init__(self) -> None:
        super().__init__()  # the lock, and the webhook outbox
        self._batches: dict[str, _Batch] = {}
        self._staged: dict[str, _Batch] = {}  # written, not live yet
        self._queues: dict[str, list[str]] = {}  # as a Redis list: LPUSH adds at index 0
        self._holds: dict[str, tuple[str, int]] = {}  # number -> batch id, item index

    def queued(self, queue: str) -> list[str]:
        """The messages on `queue`, left to right as LRANGE gives them (workers take from
        the right)."""
        with self._lock:
            return list(self._queues.get(queue, []))

    def create_batch(
        self, batch: NewBatch, items: Iterable[ItemSeed], *, live: bool = True
    ) -> None:
        status = BatchStatus(
            batch_id=batch.batch_id,
            name=batch.name,
            source=batch.source,
            state=BatchState.QUEUED,
            counts=Counts(total=batch.total, pending=batch.total),
            created_at=time.time(),
            parent_id=batch.parent_id,
            webhook=WebhookState(batch.webhook_url) if batch.webhook_url else None,
            mode=batch.mode,
            force=batch.force,
            read_first=batch.read_first,
            rollback_of=batch.rollback_of,
            selecting=batch.selecting,
            queue=batch.queue,
            priority=batch.priority,
            canary=batch.canary,
            guard=batch.guard,
            allow_overlap=batch.allow_overlap,
        )
        entry = _Batch(status, canary_left=batch.canary or None)
        _write(entry, items)
        with self._lock:
            (self._batches if live else self._staged)[batch.batch_id] = entry

    def go_live(self, batch_id: str) -> bool:
        with self._lock:
            entry = self._staged.pop(batch_id, None)
            if entry is None:
                return False
            self._batches[batch_id] = entry
            return True

    def discard(self, batch_id: str) -> None:
        with self._lock:
            self._staged.pop(batch_id, None)
            self._batches.pop(batch_id, None)

    def begin_selection(self, batch_id: str) -> bool:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None or not entry.status.selecting or entry.selection_begun:
                return False
            entry.selection_begun = True
            return True

    def add_items(self, batch_id: str, items: list[ItemSeed]) -> BatchStatus | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return None
            _write(entry, items)
            counts = entry.status.counts
            counts = replace(
                counts, total=counts.total + len(items), pending=counts.pending + len(items)
            )
            entry.status = replace(entry.status, counts=counts, selecting=False)
            if counts.pending <= 0 and entry.status.state is not BatchState.CANCELLED:
                entry.status = replace(
                    entry.status, state=BatchState.COMPLETED, finished_at=time.time()
                )
                self._ended(entry)
            return entry.status

    def expectation(self, batch_id: str, index: int) -> dict[str, Any] | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            return entry.expect.get(index) if entry else None

    def status(self, batch_id: str) -> BatchStatus | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            return entry.status if entry else None

    def record_outcome(
        self, batch_id: str, item: ItemRecord, keep_body: str | None = None,
        receipt: Receipt | None = None,
    ) -> bool:  # fmt: skip
        # No broker here: a receipt stays unsettled and the broker acks as usual.
        with self._lock:
            entry = self._batches.get(batch_id)
            current = entry.items.get(item.index) if entry else None
            if entry is None or current is None or current.status is not ItemStatus.PENDING:
                return False
            entry.items[item.index] = item
            entry.claims.pop(item.index, None)
            if keep_body:
                entry.bodies[item.index] = keep_body
            self._unhold(batch_id, current)
            entry.status = _counted(entry.status, item.status, 1)
            self._ended(entry)
            if entry.status.counts.pending > 0:
                self._guard(entry, guard_mark(item))
            return True

    def _guard(self, entry: _Batch, mark: str) -> None:
        """The failure guard, as RECORD_OUTCOME keeps it."""
        rule = entry.status.guard
        if not rule.on or not mark:
            return
        entry.window.insert(0, mark == "1")
        del entry.window[rule.window :]
        fails, full = sum(entry.window), len(entry.window) >= rule.window
        if (
            entry.status.state is BatchState.RUNNING
            and full
            and fails > rule.threshold * rule.window
        ):
            reason = f"guard: {fails} of the last {rule.window} outcomes failed for good (HTTP 4xx "
            reason += f"other than 429), more than the {rule.threshold * 100:g}% allowed"
            self._self_pause(entry, "guard", reason)

    def _self_pause(self, entry: _Batch, kind: str, reason: str) -> None:
        now = time.time()
        entry.status = replace(
            entry.status, state=BatchState.PAUSED, paused_at=now, paused_by=kind,
            paused_reason=reason, pauses=entry.status.pauses + 1,
        )  # fmt: skip
        self._queue_webhook(entry.status, paused=True)

    def _unhold(self, batch_id: str, record: ItemRecord) -> None:
        if self._holds.get(record.number_id) == (batch_id, record.index):
            del self._holds[record.number_id]

    def hold(
        self, batch_id: str, numbers: Iterable[tuple[str, int]], *, share: bool = False
    ) -> list[tuple[str, str]]:
        wanted = list(numbers)
        with self._lock:
            held = [
                (number, holder)
                for number, _ in wanted
                if (holder := self._holder(number, batch_id)) is not None
            ]
            if held and not share:
                return held
            taken = {number for number, _ in held}
            for number, index in wanted:
                if number not in taken:
                    self._holds[number] = (batch_id, index)
            return held

    def _holder(self, number: str, batch_id: str) -> str | None:
        """The other batch holding `number` now, as HOLD tells it."""
        holder, index = self._holds.get(number, (batch_id, -1))
        entry = self._batches.get(holder) or self._staged.get(holder)
        if holder == batch_id or entry is None:
            return None
        fresh = time.time() - entry.status.created_at < STAGED_HOLD_SECONDS
        if holder in self._staged:  # held while it is written
            return holder if fresh else None
        item = entry.items.get(index)
        if item is None:  # a selection adding its items
            return holder if fresh and entry.selection_begun and entry.status.selecting else None
        return holder if item.status is ItemStatus.PENDING else None

    def release_holds(self, batch_id: str, numbers: Iterable[tuple[str, int]]) -> None:
        with self._lock:
            for number, index in numbers:
                if self._holds.get(number) == (batch_id, index):
                    del self._holds[number]

    def claim(self, batch_id: str, index: int, lease: float, owner: str) -> Ticket:
        now = time.time()
        with self._lock:
            entry = self._batches.get(batch_id)
            current = entry.items.get(index) if entry else None
            if entry is None or current is None:
                return Ticket(Claim.MISSING)
            if current.status is not ItemStatus.PENDING:
                return Ticket(Claim.DONE)
            if entry.status.state is BatchState.CANCELLED:
                entry.items[index] = replace(current, status=ItemStatus.CANCELLED, finished_at=now)
                self._unhold(batch_id, current)
                entry.claims.pop(index, None)
                entry.bodies.pop(index, None)  # never to be sent: no secret kept
                entry.status = _counted(entry.status, ItemStatus.CANCELLED, 1)
                self._ended(entry)
                return Ticket(Claim.CANCELLED)
            expiry, holder = entry.claims.get(index, (0.0, ""))
            if entry.status.state is BatchState.PAUSED:
                if expiry and holder == owner:  # only this run's own claim: see CLAIM
                    entry.claims.pop(index, None)
                return Ticket(Claim.PAUSED)
            if expiry > now and holder != owner:
                return Ticket(Claim.BUSY, busy_for=expiry - now)
            canary = not holder and entry.canary_left is not None
            if canary and entry.canary_left is not None and entry.canary_left <= 0:
                self._self_pause(
                    entry,
                    "canary",
                    f"canary: the first {entry.status.canary} numbers were taken; check "
                    "them, then continue or cancel",
                )
                return Ticket(Claim.PAUSED)
            if canary and entry.canary_left is not None:
                entry.canary_left -= 1
            entry.claims[index] = (now + lease, owner)
            entry.status = _active(entry.status, now)
            claim = Claim.RETAKEN if holder else Claim.CLAIMED
            kept = entry.snapshots.get(index)
            return Ticket(
                claim, item=current, rules=SendRules.of(entry.status, canary=canary),
                snapshot=json.loads(kept) if kept else None,
            )  # fmt: skip

    def keep_snapshot(self, batch_id: str, index: int, snapshot: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return snapshot
            kept = entry.snapshots.setdefault(index, json.dumps(snapshot))
            found: dict[str, Any] = json.loads(kept)
            return found

    def release(self, batch_id: str, index: int) -> None:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry:
                entry.claims.pop(index, None)

    def cancel(self, batch_id: str) -> BatchStatus | None:
        now = time.time()
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return None
            if entry.status.state in (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED):
                entry.status = replace(
                    entry.status, state=BatchState.CANCELLED, finished_at=now, active_at=now,
                    paused_at=None,
                )  # fmt: skip
                entry.parked.clear()
            if entry.status.state is BatchState.CANCELLED:
                swept = 0
                for index, record in entry.items.items():
                    live = entry.claims.get(index, (0.0, ""))[0] > now
                    if record.status is ItemStatus.PENDING and not live:
                        entry.items[index] = replace(
                            record, status=ItemStatus.CANCELLED, finished_at=now
                        )
                        self._unhold(batch_id, record)
                        entry.claims.pop(index, None)
                        entry.bodies.pop(index, None)  # never to be sent: no secret kept
                        swept += 1
                entry.status = _counted(entry.status, ItemStatus.CANCELLED, swept)
                self._ended(entry)
            return entry.status

    def state_of(self, batch_id: str) -> BatchState | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            return entry.status.state if entry else None

    def pause(self, batch_id: str) -> BatchStatus | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return None
            if entry.status.state in (BatchState.QUEUED, BatchState.RUNNING):
                entry.status = replace(entry.status, state=BatchState.PAUSED, paused_at=time.time())
            return entry.status

    def park(self, batch_id: str, queue: str, message: str) -> bool:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is not None and entry.status.state is BatchState.PAUSED:
                entry.parked.insert(0, message)
                entry.parked_queue = queue  # where a continue puts them back
                return True
            self._queues.setdefault(queue, []).insert(0, message)
            return False

    def parked(self, batch_id: str) -> list[str]:
        with self._lock:
            entry = self._batches.get(batch_id)
            return list(entry.parked) if entry else []

    def continue_batch(
        self, batch_id: str, queue: str, *, no_guard: bool = False
    ) -> tuple[bool, BatchStatus] | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return None
            if entry.status.state is not BatchState.PAUSED:
                return False, entry.status
            state = BatchState.RUNNING if entry.status.started_at else BatchState.QUEUED
            entry.status = replace(
                entry.status, state=state, paused_at=None, paused_by=None, paused_reason=None,
                active_at=time.time(), guard=NO_GUARD if no_guard else entry.status.guard,
            )  # fmt: skip
            if entry.canary_left == 0:
                entry.canary_left = None  # the canary paused it: it is over
            entry.window.clear()
            # To the front of the queue (its right end), the first parked taken first.
            self._queues.setdefault(entry.parked_queue or queue, []).extend(entry.parked)
            entry.parked.clear()
            return True, entry.status

    def bodies(self, batch_id: str, indexes: list[int]) -> dict[int, str]:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return {}
            return {i: entry.bodies[i] for i in indexes if i in entry.bodies}

    def halt(self, batch_id: str, reason: str) -> None:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry and entry.status.halted_reason is None:
                entry.status = replace(entry.status, halted_reason=reason)

    def _ended(self, entry: _Batch) -> None:
        entry.status = self._queue_webhook(entry.status)

    def _status_of(self, batch_id: str) -> BatchStatus | None:
        entry = self._batches.get(batch_id)
        return entry.status if entry else None

    def _set_status(self, batch_id: str, status: BatchStatus) -> None:
        self._batches[batch_id].status = status

    def link_retry(self, parent_id: str, child_id: str) -> None:
        with self._lock:
            entry = self._batches.get(parent_id)
            if entry:
                retried = (*entry.status.retried_by, child_id)
                entry.status = replace(entry.status, retried_by=retried)

    def note_auth_failure(self, batch_id: str, reason: str, limit: int) -> bool:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return False
            entry.auth_failures += 1
            if entry.status.halted_reason is None and entry.auth_failures >= limit:
                entry.status = replace(entry.status, halted_reason=reason)
            return entry.status.halted_reason is not None

    def item(self, batch_id: str, index: int) -> ItemRecord | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            return entry.items.get(index) if entry else None

    def items(self, batch_id: str, start: int = 0, limit: int = 500) -> list[ItemRecord]:
        with self._lock:
            entry = self._batches.get(batch_id)
            if entry is None:
                return []
            indexes = range(max(start, 0), max(start, 0) + max(limit, 0))
            return [entry.items[i] for i in indexes if i in entry.items]

    def list_batches(self, offset: int = 0, limit: int = 50) -> list[BatchStatus]:
        with self._lock:
            statuses = [entry.status for entry in self._batches.values()]
        newest = sorted(statuses, key=lambda b: b.created_at, reverse=True)
        return newest[offset : offset + limit]


def _write(entry: _Batch, items: Iterable[ItemSeed]) -> None:
    for seed in items:
        entry.items[seed.index] = ItemRecord(seed.index, seed.row, seed.number_id)
        entry.bodies[seed.index] = seed.body
        if seed.expect:
            entry.expect[seed.index] = json.loads(seed.expect)


def _active(batch: BatchStatus, now: float) -> BatchStatus:
    if batch.state is BatchState.QUEUED:
        return replace(batch, state=BatchState.RUNNING, started_at=now, active_at=now)
    return replace(batch, active_at=now)


def _counted(batch: BatchStatus, status: ItemStatus, moved: int) -> BatchStatus:
    """The batch after `moved` items left `pending` for `status`."""
    if not moved:
        return batch
    now = time.time()
    counts = replace(batch.counts, pending=batch.counts.pending - moved)
    counts = replace(counts, **{status.value: getattr(counts, status.value) + moved})
    batch = _active(replace(batch, counts=counts), now)
    if counts.pending <= 0 and batch.state in (BatchState.RUNNING, BatchState.PAUSED):
        batch = replace(batch, state=BatchState.COMPLETED, finished_at=now, paused_at=None)
    return batch
