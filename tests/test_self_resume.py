"""The workers' self-resume sweep against a real Redis: a stalled batch of their queue is
resumed once and says so; a paused one, one of another queue and one with tasks are not."""

from __future__ import annotations

import time

import redis

from jobs.batch.validation import BatchItem
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.operations.self_resume import SelfResumed, resume_stalled
from jobs.queue.keys import deferred_key
from jobs.queue.priority import Priority, queue_key, queue_keys, queue_length
from jobs.store.keys import UNFINISHED_KEY
from jobs.store.redis_store import RedisReportStore

QUEUE = "q-self"
NORMAL = queue_key(QUEUE, Priority.NORMAL.level)  # where a normal batch's tasks wait


def _stalled(
    client: redis.Redis, queue: str = QUEUE, count: int = 3, priority: Priority = Priority.NORMAL
) -> tuple[RedisReportStore, str]:
    """A live batch whose queued tasks are gone (sent without a read: one task per item)."""
    store = RedisReportStore(client, retention_seconds=600)
    # Numbers of its own: two live batches may not change the same numbers.
    numbers = [f"{queue}-n{i}" for i in range(count)]
    items = [BatchItem(row=i + 2, number_id=n, body='{"name":"x"}') for i, n in enumerate(numbers)]
    batch_id = submit_batch(
        items, store=store, broker=client, queue=queue, name="t", source="cli",
        options=BatchOptions(read_first=False, priority=priority),
    )  # fmt: skip
    assert queue_length(client, queue) == count
    client.delete(*queue_keys(queue), deferred_key(queue))
    return store, batch_id


def _sweep(store: RedisReportStore, queue: str = QUEUE) -> list[str]:
    done = resume_stalled(store, queue, quiet_after=0, stale_after=30, hold=5)
    return [one.batch_id for one in done]


def test_a_stalled_batch_is_resumed_once_and_says_so(redis_client: redis.Redis) -> None:
    store, batch_id = _stalled(redis_client)

    assert _sweep(store) == [batch_id]
    assert redis_client.llen(NORMAL) == 3  # one task per pending item, at its priority
    assert _sweep(store) == []  # its tasks are queued now: not stalled
    status = store.status(batch_id)
    assert status is not None and status.resumed == 1 and status.resumed_at is not None


def test_a_resumed_batch_keeps_its_priority(redis_client: redis.Redis) -> None:
    store, batch_id = _stalled(redis_client, priority=Priority.HIGH)

    assert _sweep(store) == [batch_id]
    assert redis_client.llen(queue_key(QUEUE, Priority.HIGH.level)) == 3
    assert queue_length(redis_client, QUEUE) == 3


def test_paused_batches_and_other_queues_are_left_alone(redis_client: redis.Redis) -> None:
    store, paused = _stalled(redis_client)
    store.pause(paused)
    _, theirs = _stalled(redis_client, queue="q-other")

    assert _sweep(store) == []
    assert queue_length(redis_client, QUEUE) == 0 and queue_length(redis_client, "q-other") == 0
    assert _sweep(store, "q-other") == [theirs]


def test_ended_batches_leave_the_index_the_sweep_walks(redis_client: redis.Redis) -> None:
    store, batch_id = _stalled(redis_client)
    store.cancel(batch_id)

    assert _sweep(store) == []
    assert redis_client.zscore(UNFINISHED_KEY, batch_id) is None


def test_a_quiet_batch_with_tasks_waiting_is_not_looked_at_every_sweep(
    redis_client: redis.Redis,
) -> None:
    store = RedisReportStore(redis_client, retention_seconds=600)
    items = [BatchItem(row=2, number_id="n0", body='{"name":"x"}')]
    batch_id = submit_batch(
        items, store=store, broker=redis_client, queue=QUEUE, name="t", source="cli",
        options=BatchOptions(read_first=False),
    )  # fmt: skip
    time.sleep(0.6)  # quiet for longer than the sweep's 0.5 s
    looked: dict[str, float] = {}

    def sweep() -> list[SelfResumed]:
        return resume_stalled(
            store, QUEUE, quiet_after=0.5, stale_after=30, hold=5, looked=looked
        )  # its task is queued: not stalled, and noted as looked at

    assert sweep() == [] and batch_id in looked
    redis_client.delete(NORMAL)
    assert sweep() == []  # looked at 0.5 s ago at most: not again yet
    time.sleep(0.6)
    assert [one.batch_id for one in sweep()] == [batch_id]
