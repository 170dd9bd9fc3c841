"""Submit a validated batch: the batch record first, then one task per number.

Tasks go to the broker's Redis list in pipelined chunks (one LPUSH of many messages per
round trip) instead of one `apply_async` round trip each, each message filled into one
template and each chunk packed by `jobs.queue.resp` and sent while the next one is built:
100,000 numbers enqueue in well under a second.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice

import orjson
import redis

from jobs.batch.reads import Read, unread_key
from jobs.batch.redaction import redact_pairs
from jobs.batch.validation import BatchItem
from jobs.queue import resp
from jobs.queue.bulk import BulkWriter
from jobs.queue.messages import (
    READ_TASK,
    SELECT_TASK,
    UPDATE_TASK,
    message_template,
    new_id,
    new_ids,
    task_message,
    update_args,
)
from jobs.queue.priority import Priority, queue_key
from jobs.store.guardrails import NO_GUARD, GuardRule
from jobs.store.interface import BatchMode, ItemSeed, NewBatch, ReportStore, new_batch_id

CHUNK = 1000
Progress = Callable[[int], None]


class Overlap(Exception):
    """A new batch names numbers that running batches hold (`held`: number id, holder
    batch id); nothing of it was queued."""

    def __init__(self, held: list[tuple[str, str]]) -> None:
        self.held = held
        holders = sorted({holder for _, holder in held})
        shown = ", ".join(holders[:3]) + (
            f" and {len(holders) - 3} more" if len(holders) > 3 else ""
        )
        super().__init__(
            f"{len(held)} of its numbers are being changed by another batch ({shown}); "
            "nothing was queued"
        )


def enqueue_items(
    broker: redis.Redis,
    queue: str,
    batch_id: str,
    items: Sequence[BatchItem],
    *,
    indexes: Sequence[int] | None = None,
    on_progress: Progress | None = None,
    reads: Sequence[Read | None] | None = None,
    front: bool = False,
    priority: Priority,
) -> int:
    """Push one update task per item, `CHUNK` per round trip; returns how many.

    Items are the batch's own, in order, unless `indexes` says which item each one is
    (resume re-enqueues a few items of a batch). `reads`, one per item, are the numbers'
    current values from a listing: the task sends from them instead of a GET. `front`
    puts them where workers take next (still in their order), ahead of what waits. The
    tasks carry the batch's `priority` and wait on its key of the queue."""
    template = message_template(
        task_name=UPDATE_TASK, queue=queue, origin=f"phonebatch-producer@{socket.gethostname()}",
        priority=priority.level,
    )  # fmt: skip
    pushed = 0
    positions = indexes if indexes is not None else range(len(items))
    triples = zip(positions, items, reads or [None] * len(items), strict=True)
    # Workers take from the right end: RPUSH the last first, so the first ends up there.
    it = iter(reversed(list(triples)) if front else triples)
    push = "RPUSH" if front else "LPUSH"
    with BulkWriter(broker) as writer:
        while chunk := list(islice(it, CHUNK)):
            ids = new_ids(2 * len(chunk))
            messages = [
                template.fill(
                    args_json=update_args(batch_id, index, item.row, item.number_id, item.body),
                    task_id=ids[2 * n],
                    argsrepr=f"(batch={batch_id}, row={item.row}, id={item.number_id})",
                    tag=ids[2 * n + 1],
                    kwargs_json=read_kwargs(read),
                )
                for n, (index, item, read) in enumerate(chunk)
            ]
            pushed += len(messages)
            writer.send(
                resp.command([push, template.key, *messages]),
                replies=1,
                on_confirmed=partial(on_progress, pushed) if on_progress else None,
            )
    return pushed


@dataclass(frozen=True)
class BatchOptions:
    """How a new batch sends: its mode, whether to read numbers first, whether to force."""

    mode: BatchMode = BatchMode.UPDATE
    force: bool = False  # send even to numbers already in the target state
    read_first: bool = True  # GET each number first (skip no-ops, keep a snapshot)
    rollback_of: str | None = None
    priority: Priority = Priority.NORMAL
    canary: int = 0  # send this many numbers, then pause for a look
    guard: GuardRule = NO_GUARD  # pause by itself on a run of permanent failures
    allow_overlap: bool = False  # may change numbers another running batch holds


def new_batch(
    batch_id: str,
    name: str,
    source: str,
    total: int,
    parent_id: str | None = None,
    webhook_url: str | None = None,
    options: BatchOptions | None = None,
    selecting: bool = False,
    queue: str = "",
) -> NewBatch:
    chosen = options or BatchOptions()
    return NewBatch(
        batch_id, name=name, source=source, total=total, parent_id=parent_id,
        webhook_url=webhook_url, mode=chosen.mode, force=chosen.force,
        read_first=chosen.read_first, rollback_of=chosen.rollback_of, selecting=selecting,
        queue=queue, priority=chosen.priority, canary=chosen.canary, guard=chosen.guard,
        allow_overlap=chosen.allow_overlap,
    )  # fmt: skip


def _write_live(
    store: ReportStore, batch: NewBatch, items: Sequence[BatchItem], chosen: BatchOptions
) -> None:
    """Stage the batch, hold its numbers and make it live; or leave nothing of it."""
    holding = False  # numbers held by this batch, to give back if it fails
    try:
        store.create_batch(batch, seeds_of(items), live=False)
        holding = _hold(store, batch.batch_id, items, chosen)
        if not store.go_live(batch.batch_id):
            raise RuntimeError(f"batch {batch.batch_id} expired while it was being written")
    except BaseException:
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            if holding:
                store.release_holds(batch.batch_id, numbers_of(items))
            store.discard(batch.batch_id)
        raise


def _hold(
    store: ReportStore, batch_id: str, items: Sequence[BatchItem], chosen: BatchOptions
) -> bool:
    """Hold the batch's numbers (True), or raise `Overlap` having taken none; a dry run
    changes nothing and holds nothing (False)."""
    if chosen.mode is BatchMode.DRY_RUN:
        return False
    held = store.hold(batch_id, numbers_of(items), share=chosen.allow_overlap)
    if held and not chosen.allow_overlap:
        raise Overlap(held)
    return True


def numbers_of(items: Sequence[BatchItem], start: int = 0) -> Iterator[tuple[str, int]]:
    """Each item's number and index: what a batch holds."""
    for index, item in enumerate(items, start=start):
        yield item.number_id, index


def seeds_of(items: Sequence[BatchItem], start: int = 0) -> Iterator[ItemSeed]:
    for index, item in enumerate(items, start=start):
        yield ItemSeed(index, item.row, item.number_id, item.body, item.expect)


def submit_selection(
    conditions: dict[str, str],
    values: dict[str, str],
    *,
    store: ReportStore,
    broker: redis.Redis,
    queue: str,
    name: str,
    source: str,
    webhook_url: str | None = None,
    options: BatchOptions | None = None,
) -> str:
    """A batch whose numbers a worker finds by listing them (only workers hold the key)."""
    batch_id = new_batch_id()
    store.create_batch(
        new_batch(
            batch_id, name, source, 0, None, webhook_url, options, selecting=True, queue=queue
        ),
        [],
    )
    level = (options or BatchOptions()).priority.level
    message = task_message(
        task_name=SELECT_TASK,
        task_id=new_id(),
        args_json=json.dumps([batch_id, conditions, values]),
        queue=queue,
        origin=f"phonebatch-producer@{socket.gethostname()}",
        argsrepr=f"(batch={batch_id}, where={redact_pairs(conditions)})",
        priority=level,
    )
    broker.lpush(queue_key(queue, level), message)
    return batch_id


def read_kwargs(read: Read | None) -> str:
    if read is None:
        return "{}"
    return orjson.dumps({"read": read.as_json()}).decode()


def note_unread(
    broker: redis.Redis, batch_id: str, items: Sequence[BatchItem], retention: int
) -> None:
    """Which numbers of the batch the listing has yet to show, and their items."""
    key = unread_key(batch_id)
    with BulkWriter(broker) as writer:
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            fields = [
                part
                for index, item in enumerate(chunk, start=start)
                for part in (item.number_id, f"{index},{item.row}")
            ]
            writer.send(resp.command(["HSET", key, *fields]), replies=1)
        writer.send(resp.command(["EXPIRE", key, str(retention)]), replies=1)


def reader_message(queue: str, batch_id: str, priority: Priority) -> str:
    """The task that reads a batch's numbers a page at a time and queues their items (to
    push on `queue_key(queue, priority.level)`)."""
    return task_message(
        task_name=READ_TASK,
        task_id=new_id(),
        args_json=json.dumps([batch_id]),
        queue=queue,
        origin=f"phonebatch-producer@{socket.gethostname()}",
        argsrepr=f"(batch={batch_id}, read)",
        priority=priority.level,
    )


def push_reader(broker: redis.Redis, queue: str, batch_id: str, priority: Priority) -> None:
    """Queue the batch's reader task at the batch's priority."""
    broker.lpush(queue_key(queue, priority.level), reader_message(queue, batch_id, priority))


def submit_batch(
    items: Sequence[BatchItem],
    *,
    store: ReportStore,
    broker: redis.Redis,
    queue: str,
    name: str,
    source: str,
    parent_id: str | None = None,
    webhook_url: str | None = None,
    batch_id: str | None = None,
    options: BatchOptions | None = None,
    on_progress: Progress | None = None,
) -> str:
    """Create the batch in the report store and enqueue its tasks; returns its id.

    All or nothing: the batch is staged (invisible to everyone) until its last item is
    written, then goes live in one step, and only then are its tasks queued. A failure
    part way removes what was written; a submitter that dies part way leaves a staged
    batch that expires within the hour, with no task that could send anything.

    A batch that changes numbers holds them while their items are pending: if another
    batch holds any, it raises `Overlap` and queues nothing (unless `allow_overlap`). A
    dry run changes nothing: it neither holds nor is refused."""
    batch_id = batch_id or new_batch_id()
    chosen = options or BatchOptions()
    batch = new_batch(
        batch_id, name, source, len(items), parent_id, webhook_url, chosen, queue=queue
    )
    _write_live(store, batch, items, chosen)
    if chosen.read_first and len(items) >= 2:
        # A worker reads the numbers through the listing, page by page, and queues each
        # page's items with their reads (`worker.reader`): no GET per number.
        note_unread(broker, batch_id, items, store.retention_seconds)
        push_reader(broker, queue, batch_id, chosen.priority)
        if on_progress is not None:
            on_progress(len(items))
    else:
        enqueue_items(
            broker, queue, batch_id, items, on_progress=on_progress, priority=chosen.priority
        )
    if parent_id is not None:
        store.link_retry(parent_id, batch_id)
    return batch_id
