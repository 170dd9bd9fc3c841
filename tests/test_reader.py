"""The listing task's steps (`worker.reader`) against a real Redis, with the API's answers
scripted: when it reads a page, what it queues, when it stops."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from jobs.batch.reads import unread_key
from jobs.batch.validation import BatchItem
from jobs.operations.producer import note_unread
from jobs.queue.priority import Priority, queue_key, queue_length
from jobs.store.interface import ItemSeed, ItemStatus, NewBatch, Outcome
from jobs.store.redis_store import RedisReportStore
from worker.reader import POLL, Progress, Reader
from worker.retry import Attempts
from worker.vapi import ApiResult

T = TypeVar("T")
QUEUE = "q-reader"
NORMAL = queue_key(QUEUE, Priority.NORMAL.level)  # where a normal batch's tasks wait


class Listing:
    """The API's listing, newest first, a page at a time; counts the pages asked for."""

    def __init__(self, numbers: list[dict[str, Any]]) -> None:
        self.numbers = sorted(numbers, key=lambda n: n["createdAt"], reverse=True)
        self.pages = 0

    def list_phone_numbers(self, limit: int, created_at_le: str | None = None) -> ApiResult:
        self.pages += 1
        shown = [
            n for n in self.numbers if created_at_le is None or n["createdAt"] <= created_at_le
        ]
        return ApiResult(200, shown[:limit])


class Direct:
    def run(
        self, call: Callable[[], T], attempts: Attempts, gate: Any = None
    ) -> tuple[T, Attempts]:
        return call(), attempts


def _numbers(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"n{i}",
            "provider": "vapi",
            "assistantId": "old",
            "createdAt": f"2026-01-01T00:{i:02d}",
        }
        for i in range(count)
    ]


def _setup(
    client: redis.Redis, count: int, page_size: int, priority: Priority = Priority.NORMAL
) -> tuple[Reader, Listing, RedisReportStore]:
    store = RedisReportStore(client, retention_seconds=600)
    items = [
        BatchItem(i + 2, f"n{i}", json.dumps({"provider": "vapi", "assistantId": "new"}))
        for i in range(count)
    ]
    store.create_batch(
        NewBatch("b1", name="t", source="cli", total=count, priority=priority),
        [ItemSeed(i, it.row, it.number_id, it.body) for i, it in enumerate(items)],
    )
    note_unread(client, "b1", items, 600)
    listing = Listing(_numbers(count))
    reader = Reader(
        api=listing, sender=Direct(), store=store, client=client,  # type: ignore[arg-type]
        queue=QUEUE, page_size=page_size, account_key="acct",
    )  # fmt: skip
    return reader, listing, store


def _finish(store: RedisReportStore, index: int) -> None:
    record = store.item("b1", index)
    assert record is not None
    store.record_outcome("b1", record.with_outcome(Outcome(ItemStatus.SUCCEEDED), 1.0))


def test_a_page_queues_its_items_with_their_reads(redis_client: redis.Redis) -> None:
    reader, listing, _ = _setup(redis_client, 30, page_size=10)
    step = reader.step("b1", Progress())
    assert step is not None and listing.pages == 1
    messages = redis_client.lrange(NORMAL, 0, -1)  # the batch's priority's key
    assert len(messages) == 10 and redis_client.hlen(unread_key("b1")) == 20
    progress, delay = step
    assert (progress.pages, progress.found, progress.last, delay) == (1, 10, 10, POLL)


def test_the_next_page_waits_until_most_of_the_last_is_sent(redis_client: redis.Redis) -> None:
    reader, listing, store = _setup(redis_client, 30, page_size=10)
    step = reader.step("b1", Progress())
    assert step is not None
    progress = step[0]
    for index in range(5):  # half of the first page's items are sent: too early
        _finish(store, 29 - index)
    assert reader.step("b1", progress) == (progress, POLL)
    assert listing.pages == 1
    for index in range(5, 8):  # 7 of 10 sent: 30% left, read the next page
        _finish(store, 29 - index)
    assert reader.step("b1", progress) is not None
    assert listing.pages == 2


def test_when_pages_stop_paying_the_rest_is_read_by_get(redis_client: redis.Redis) -> None:
    # The batch's 3 numbers are the account's oldest: the first page of 10 shows none, so
    # a next page could cost more than GETs would; the three are queued without reads.
    reader, listing, _ = _setup(redis_client, 3, page_size=10)
    listing.numbers = _numbers(3)[::-1] + [
        {"id": f"x{i}", "provider": "vapi", "createdAt": f"2026-02-01T00:{i:02d}"}
        for i in range(20)
    ]
    listing.numbers.sort(key=lambda n: n["createdAt"], reverse=True)
    assert reader.step("b1", Progress()) is None
    assert listing.pages == 1
    assert redis_client.llen(NORMAL) == 3  # one task each, to read its number by GET
    assert redis_client.exists(unread_key("b1")) == 0


def test_a_batchs_items_are_queued_at_its_priority(redis_client: redis.Redis) -> None:
    reader, _, _ = _setup(redis_client, 30, page_size=10, priority=Priority.HIGH)
    assert reader.step("b1", Progress()) is not None
    assert redis_client.llen(QUEUE) == queue_length(redis_client, QUEUE) == 10  # high's key
    assert reader.queue_unread("b1") == 20  # by GET: the priority looked up in the store
    high = [json.loads(m) for m in redis_client.lrange(QUEUE, 0, -1)]
    assert len(high) == 30 and {m["properties"]["priority"] for m in high} == {0}


def test_a_cancelled_batch_stops_listing(redis_client: redis.Redis) -> None:
    reader, listing, store = _setup(redis_client, 30, page_size=10)
    store.cancel("b1")
    assert reader.step("b1", Progress()) is None
    assert listing.pages == 0 and redis_client.exists(unread_key("b1")) == 0


def test_progress_survives_its_message() -> None:
    progress = Progress("2026-01-01T00:05", 2, 19, 20, 9)
    assert Progress.from_args(json.loads(json.dumps(progress.as_args()))) == progress
    assert Progress.from_args([]) == Progress()
