"""Read a batch's numbers through the listing, a page just ahead of the sends.

One task per step (`phonebatch.read_numbers`): read one page, queue the batch's items
found on it with their reads (`jobs.batch.reads.Read`), then either come back for the next
page when the sends of this one are mostly done, or stop and queue every number the
listing did not show, to be read by GET. The rules (what is kept, how old, when listing
pays) are in `jobs.batch.reads`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis

from jobs.batch.reads import keep_listing, kept_read, unread_key, worth_listing
from jobs.batch.validation import BatchItem
from jobs.operations.producer import enqueue_items
from jobs.queue.priority import Priority
from jobs.store.interface import BatchMode, BatchState, ReportStore
from worker.delivery import Sender
from worker.retry import Attempts
from worker.vapi import VapiApi

log = logging.getLogger(__name__)

AHEAD = 0.3  # the next page is read when this share of the last page's items is left
POLL = 0.5  # seconds between looks at how far the sends are
PAUSED_POLL = 2.0  # seconds between looks at a paused batch
ACCOUNT_SIZE_SECONDS = 7 * 86_400


def account_size_key(limiter_key: str) -> str:
    """How many numbers the account had at its last full listing (per API and key)."""
    return f"{limiter_key}:numbers"


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a batch's listing is: passed from one step to the next."""

    cursor: str | None = None  # createdAtLe of the next page
    pages: int = 0
    found: int = 0  # numbers of the batch the pages showed
    listed: int = 0  # numbers the pages showed in all
    last: int = 0  # numbers of the batch the last page showed

    def as_args(self) -> list[Any]:
        return [self.cursor, self.pages, self.found, self.listed, self.last]

    @classmethod
    def from_args(cls, args: list[Any]) -> Progress:
        cursor, pages, found, listed, last = [*args, None, 0, 0, 0, 0][:5]
        return cls(cursor, int(pages or 0), int(found or 0), int(listed or 0), int(last or 0))


@dataclass(frozen=True, slots=True)
class Reader:
    """Takes a batch's listing one step at a time, with what a step needs to read and queue."""

    api: VapiApi
    sender: Sender
    store: ReportStore
    client: redis.Redis
    queue: str
    page_size: int
    account_key: str  # where the account's size is remembered

    def step(self, batch_id: str, progress: Progress) -> tuple[Progress, float] | None:
        """Read one page (or decide not to, or not yet); returns the next step and when
        to take it (seconds from now), or None when the listing is over."""
        status = self.store.status(batch_id)
        if status is None or status.state in (BatchState.CANCELLED, BatchState.COMPLETED):
            self.client.delete(unread_key(batch_id))  # a cancel marked the items already
            return None
        if status.state is BatchState.PAUSED:
            return progress, PAUSED_POLL  # no read while paused: it would be stale after
        unread = int(self.client.hlen(unread_key(batch_id)))
        if progress.pages == 0 and not worth_listing(unread, self._account_size(), self.page_size):
            self.queue_unread(batch_id, status.priority)
            return None
        # Just ahead of the sends: the last page's items must be mostly sent first, or
        # their reads would age while they wait.
        waiting = status.counts.pending - unread  # queued with their reads, not done yet
        per_page = max(progress.last, progress.found / max(1, progress.pages))
        if progress.pages and waiting > AHEAD * per_page:
            return progress, POLL
        result, _ = self.sender.run(
            partial(self.api.list_phone_numbers, self.page_size, progress.cursor), Attempts()
        )
        at = time.time()
        page = [n for n in (result.payload or []) if isinstance(n, dict) and "id" in n]
        queued = self._queue_found(
            batch_id, page, at, status.mode is BatchMode.ROLLBACK, status.priority
        )
        cursor = min((str(n.get("createdAt", "")) for n in page), default=None)
        done = Progress(
            cursor, progress.pages + 1, progress.found + queued, progress.listed + len(page),
            queued,
        )  # fmt: skip
        full = len(page) >= self.page_size and cursor != progress.cursor
        if not full:
            self.client.set(self.account_key, done.listed, ex=ACCOUNT_SIZE_SECONDS)
        left = int(self.client.hlen(unread_key(batch_id)))
        log.info(
            "batch %s: listing page %d showed %d of its numbers (%d left)",
            batch_id, done.pages, queued, left,
        )  # fmt: skip
        if keep_listing(done.pages, done.found, left, full):
            return done, POLL
        self.queue_unread(batch_id, status.priority)
        return None

    def _account_size(self) -> int | None:
        size = self.client.get(self.account_key)
        return int(size) if size is not None else None

    def _queue_found(
        self, batch_id: str, page: list[dict[str, Any]], at: float, rollback: bool,
        priority: Priority,
    ) -> int:  # fmt: skip
        key = unread_key(batch_id)
        ids = [str(n["id"]) for n in page]
        if not ids:
            return 0
        hits = {
            number_id: where
            for number_id, where in zip(ids, self.client.hmget(key, ids), strict=True)
            if where is not None
        }
        if not hits:
            return 0
        listed = {str(n["id"]): n for n in page}
        items, indexes = self._items(batch_id, hits)
        reads = [
            kept_read(listed[item.number_id], self._fields(batch_id, item, index, rollback), at)
            for item, index in zip(items, indexes, strict=True)
        ]
        enqueue_items(
            self.client, self.queue, batch_id, items, indexes=indexes, reads=reads,
            priority=priority,
        )  # fmt: skip
        self.client.hdel(key, *hits)  # only once queued: a crash between queues twice
        return len(items)

    def _fields(self, batch_id: str, item: BatchItem, index: int, rollback: bool) -> dict[str, Any]:
        """What the item's task will look at: its body's fields, and for a rollback also
        the fields it expects to find as the rolled-back batch left them."""
        body: dict[str, Any] = json.loads(item.body)
        if not rollback:
            return body
        return {**(self.store.expectation(batch_id, index) or {}), **body}

    def queue_unread(self, batch_id: str, priority: Priority | None = None) -> int:
        """Queue every item the listing did not show: each task reads its number by GET.
        They go first, ahead of the listed items still waiting: a number missing from the
        account's listing is the likeliest to be wrong (a 404), and the batch's failure
        guard should see that early, not after every listed number was changed. The tasks
        go at the batch's priority (looked up unless given)."""
        key = unread_key(batch_id)
        raw: dict[bytes, bytes] = self.client.hgetall(key)  # type: ignore[assignment]
        hits = {k.decode(): v for k, v in raw.items()}
        if hits:
            if priority is None:
                status = self.store.status(batch_id)
                priority = status.priority if status is not None else Priority.NORMAL
            items, indexes = self._items(batch_id, hits)
            enqueue_items(
                self.client, self.queue, batch_id, items, indexes=indexes, front=True,
                priority=priority,
            )  # fmt: skip
        self.client.delete(key)
        return len(hits)

    def _items(
        self, batch_id: str, hits: Mapping[str, bytes | str]
    ) -> tuple[list[BatchItem], list[int]]:
        placed = []
        for number_id, where in hits.items():
            text = where.decode() if isinstance(where, bytes) else where
            index, row = (int(part) for part in text.split(","))
            placed.append((index, row, number_id))
        placed.sort()
        bodies = self.store.bodies(batch_id, [index for index, _, _ in placed])
        items = [
            BatchItem(row=row, number_id=number_id, body=bodies.get(index, "{}"))
            for index, row, number_id in placed
        ]
        return items, [index for index, _, _ in placed]
