"""Finding a batch's tasks and resuming it, against a real Redis: tasks wait on the key of
their batch's priority, and a resume puts each back on its own."""

from __future__ import annotations

import json
import time

import redis

from jobs.batch.validation import BatchItem
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.operations.recovery import census, resume
from jobs.queue.keys import UNACKED_INDEX_KEY, UNACKED_KEY
from jobs.queue.priority import Priority, queue_key, queue_keys, queue_length
from jobs.store.redis_store import RedisReportStore

QUEUE = "q-recovery"


def _submit(store: RedisReportStore, priority: Priority, count: int = 4) -> str:
    # Numbers of its own: two live batches may not change the same numbers.
    numbers = [f"{priority}-n{i}" for i in range(count)]
    items = [BatchItem(row=i + 2, number_id=n, body='{"name":"x"}') for i, n in enumerate(numbers)]
    return submit_batch(
        items, store=store, broker=store.client, queue=QUEUE, name="t", source="cli",
        options=BatchOptions(read_first=False, priority=priority),
    )  # fmt: skip


def _strand(client: redis.Redis, key: str, ago: float) -> str:
    """Take one message off `key` as a worker that then died would have: held, unacked."""
    raw = client.rpop(key)
    assert isinstance(raw, bytes)
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"]
    client.hset(UNACKED_KEY, tag, json.dumps([message, "", QUEUE]))
    client.zadd(UNACKED_INDEX_KEY, {tag: time.time() - ago})
    return str(tag)


def test_the_census_looks_at_every_key_of_the_queue(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=600)
    high, low = _submit(store, Priority.HIGH), _submit(store, Priority.LOW)
    assert redis_client.llen(QUEUE) == 4 and redis_client.llen(queue_key(QUEUE, 6)) == 4

    assert census(redis_client, QUEUE, high, stale_after=30).queued == {0, 1, 2, 3}
    assert census(redis_client, QUEUE, low, stale_after=30).queued == {0, 1, 2, 3}


def test_a_stranded_task_goes_back_to_its_prioritys_key(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=600)
    batch_id = _submit(store, Priority.LOW)
    low = queue_key(QUEUE, Priority.LOW.level)
    tag = _strand(redis_client, low, ago=100)
    redis_client.delete(low)  # the rest lost: re-enqueued from the batch's bodies

    found = census(redis_client, QUEUE, batch_id, stale_after=30)
    assert list(found.stranded) == [tag] and found.stranded[tag][2] == low
    resumed = resume(store, redis_client, QUEUE, batch_id, stale_after=30)

    assert (resumed.restored, resumed.reenqueued) == (1, 3)
    assert [redis_client.llen(key) for key in queue_keys(QUEUE)] == [0, 0, 4, 0]
    assert queue_length(redis_client, QUEUE) == 4 and redis_client.hlen(UNACKED_KEY) == 0
