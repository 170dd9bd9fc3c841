"""Find a batch's tasks wherever they are, tell a stalled batch, and resume it.

A batch's tasks live in three places in Redis: the queue (a list per priority step,
`jobs.queue.priority`), the hand-back sorted set (`jobs.queue.deferral`), and kombu's
`unacked` hash (tasks a worker holds, with their delivery time in `unacked_index`). A
batch is stalled when items are pending and none of them has a task anywhere that can
still run: a task a dead worker held counts as stranded once its delivery is older than
the longest a task can run.

`resume` puts stranded tasks straight back on the queue (what kombu itself does once the
visibility timeout passes: on the key of the message's own priority) and re-enqueues the
pending items that have no task at all, at the batch's priority.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from jobs.batch.reads import unread_key
from jobs.batch.validation import BatchItem
from jobs.operations.producer import enqueue_items, push_reader
from jobs.queue.keys import RESTORE, UNACKED_INDEX_KEY, UNACKED_KEY, deferred_key
from jobs.queue.messages import READ_TASK, UPDATE_TASK
from jobs.queue.priority import level_of, queue_key, queue_keys
from jobs.store.interface import BatchState, BatchStatus, ItemStatus, ReportStore, iter_items

_SCAN = 1000


@dataclass
class TaskCensus:
    """Where a batch's tasks are: item indexes by place."""

    queued: set[int] = field(default_factory=set)
    deferred: set[int] = field(default_factory=set)
    held: set[int] = field(default_factory=set)  # by a worker, recently: can still run
    # tag -> (index, message, the queue key it goes back to: its priority's)
    stranded: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    reading: bool = False  # the batch's listing task is queued, waiting or running

    @property
    def live(self) -> set[int]:
        return (self.queued | self.deferred | self.held) - {READER}

    def note(self, place: set[int], index: int) -> None:
        if index == READER:
            self.reading = True
        place.add(index)


READER = -1  # the index `_index_of` gives the batch's listing task (`worker.reader`)


def _index_of(message: bytes | str, batch_id: str) -> int | None:
    """The item index of an update-task message of this batch, `READER` for its listing
    task, else None."""
    text = message.decode() if isinstance(message, bytes) else message
    if f"batch={batch_id}," not in text:  # the argsrepr names the batch: skip the rest fast
        return None
    envelope = json.loads(text)
    task = envelope.get("headers", {}).get("task")
    if task not in (UPDATE_TASK, READ_TASK):
        return None  # a selector's listing task, say: it holds no item
    args = json.loads(base64.b64decode(envelope["body"]))[0]
    if not args or args[0] != batch_id:
        return None
    return READER if task == READ_TASK else int(args[1])


def _list_members(client: redis.Redis, key: str) -> Iterator[bytes | str]:
    length = int(client.llen(key))
    for start in range(0, length, _SCAN):
        yield from client.lrange(key, start, start + _SCAN - 1)


def census(client: redis.Redis, queue: str, batch_id: str, stale_after: float) -> TaskCensus:
    found = TaskCensus()
    for key in queue_keys(queue):
        for message in _list_members(client, key):
            if (index := _index_of(message, batch_id)) is not None:
                found.note(found.queued, index)
    deferred: list[bytes] = client.zrange(deferred_key(queue), 0, -1)  # type: ignore[assignment]
    for message in deferred:
        if (index := _index_of(message, batch_id)) is not None:
            found.note(found.deferred, index)
    # kombu stamps a delivery with the worker host's clock: compare with a host clock.
    host_now = time.time()
    scored: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
        UNACKED_INDEX_KEY, 0, -1, withscores=True
    )
    delivered = dict(scored)
    for tag, payload in client.hscan_iter(UNACKED_KEY, count=_SCAN):
        message, _exchange, routing_key = json.loads(payload)
        if routing_key != queue:
            continue
        text = json.dumps(message)
        index = _index_of(text, batch_id)
        if index is None:
            continue
        age = host_now - delivered.get(tag, host_now)
        if age > stale_after:
            message["headers"]["redelivered"] = True
            key = queue_key(queue, level_of(message))
            found.stranded[tag.decode()] = (index, json.dumps(message), key)
        else:
            found.note(found.held, index)
    return found


def is_quiet(status: BatchStatus, now: float, quiet_after: float) -> bool:
    """Pending work and no claim or outcome for a while: worth a closer look. A paused
    batch is quiet on purpose (its tasks wait in its parked list), so never."""
    if status.done or status.state is BatchState.PAUSED:
        return False
    last = status.active_at or status.created_at
    return status.counts.pending > 0 and now - last > quiet_after


def is_stalled(
    client: redis.Redis,
    queue: str,
    status: BatchStatus,
    stale_after: float,
    quiet_after: float | None = None,
) -> bool:
    """Pending items and no task that can still run (looked for once the batch has been
    quiet for `quiet_after`, `stale_after` unless given): only a resume moves it on."""
    seconds, micros = client.time()  # batch times come from the Redis server's clock
    quiet = stale_after if quiet_after is None else quiet_after
    if not is_quiet(status, seconds + micros / 1e6, quiet):
        return False
    found = census(client, queue, status.batch_id, stale_after)
    return not found.live and not found.reading


@dataclass(frozen=True)
class Resumed:
    """What `resume` did: tasks put back on the queue, and items enqueued again."""

    restored: int  # stranded tasks put back on the queue
    reenqueued: int  # pending items that had no task at all


def resume(
    store: ReportStore, client: redis.Redis, queue: str, batch_id: str, stale_after: float
) -> Resumed:
    status = store.status(batch_id)
    if status is None or status.done or status.state is BatchState.PAUSED:
        return Resumed(0, 0)  # a paused batch's tasks are parked: `continue` sends them
    found = census(client, queue, batch_id, stale_after)
    restore = client.register_script(RESTORE)
    restored = sum(
        int(restore(keys=[UNACKED_KEY, UNACKED_INDEX_KEY, key], args=[tag, message]))
        for tag, (_, message, key) in found.stranded.items()
    )
    covered = found.live | {index for index, _, _ in found.stranded.values()}
    # Numbers the listing has yet to show are its to queue: if its task was lost, a new
    # one lists them again (restored above if it was only stranded).
    unread: set[str] = {k.decode() for k in client.hkeys(unread_key(batch_id))}  # type: ignore[union-attr]
    reader_restored = READER in {index for index, _, _ in found.stranded.values()}
    if unread and not found.reading and not reader_restored:
        push_reader(client, queue, batch_id, status.priority)
    missing = [
        record
        for record in iter_items(store, batch_id, status.counts.total)
        if record.status is ItemStatus.PENDING
        and record.index not in covered
        and record.number_id not in unread
    ]
    bodies = store.bodies(batch_id, [r.index for r in missing])
    known = [r for r in missing if r.index in bodies]
    items = [BatchItem(r.row, r.number_id, bodies[r.index]) for r in known]
    enqueue_items(
        client, queue, batch_id, items, indexes=[r.index for r in known], priority=status.priority
    )
    return Resumed(restored, len(items))
