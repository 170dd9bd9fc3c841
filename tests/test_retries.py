"""A retry is the same kind of batch as its parent, at its parent's priority unless told
otherwise; a rollback goes high unless told otherwise."""

from __future__ import annotations

import redis

from jobs.operations.retries import retry_failed
from jobs.operations.rollback import submit_rollback
from jobs.queue.priority import Priority, queue_key
from jobs.store.interface import BatchMode, ItemSeed, ItemStatus, NewBatch, Outcome
from jobs.store.redis_store import RedisReportStore


def _failed_batch(
    store: RedisReportStore, mode: BatchMode, priority: Priority = Priority.NORMAL
) -> None:
    seeds = [ItemSeed(0, 2, "n0", '{"provider":"vapi","name":"x"}', '{"name":"y"}')]
    batch = NewBatch("p", "t", "cli", total=1, mode=mode, rollback_of="orig", priority=priority)
    store.create_batch(batch, seeds)
    item = store.item("p", 0)
    assert item is not None
    store.record_outcome("p", item.with_outcome(Outcome(ItemStatus.FAILED, 503), 1.0))


def test_a_dry_run_retried_stays_a_dry_run(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=60)
    _failed_batch(store, BatchMode.DRY_RUN)
    child = store.status(retry_failed(store, "q", "p").batch_id)
    assert child is not None and child.mode is BatchMode.DRY_RUN and child.parent_id == "p"


def test_a_rollback_retried_keeps_checking_for_conflicts(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=60)
    _failed_batch(store, BatchMode.ROLLBACK)
    made = retry_failed(store, "q", "p")
    child = store.status(made.batch_id)
    assert child is not None and child.mode is BatchMode.ROLLBACK and child.rollback_of == "orig"
    assert store.expectation(made.batch_id, 0) == {"name": "y"}


def test_a_retry_runs_at_its_parents_priority_unless_told(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=60)
    _failed_batch(store, BatchMode.UPDATE, Priority.HIGH)
    inherited = store.status(retry_failed(store, "q", "p").batch_id)
    assert inherited is not None and inherited.priority is Priority.HIGH
    store.cancel(inherited.batch_id)  # it holds the number the next one names
    told = store.status(retry_failed(store, "q", "p", Priority.LOW).batch_id)
    assert told is not None and told.priority is Priority.LOW
    # A one-item batch is read by GET: its task waits on its priority's key at once.
    assert redis_client.llen(queue_key("q", 0)) == redis_client.llen(queue_key("q", 6)) == 1


def test_a_rollback_goes_high_unless_told(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=60)
    seeds = [ItemSeed(0, 2, "n0", '{"provider":"vapi","name":"new"}')]
    store.create_batch(NewBatch("p", "t", "cli", total=1, priority=Priority.LOW), seeds)
    item = store.item("p", 0)
    assert item is not None
    sent = {"provider": "vapi", "name": "new"}
    done = Outcome(ItemStatus.SUCCEEDED, 200, sent=sent, details={"before": {"name": "old"}})
    store.record_outcome("p", item.with_outcome(done, 1.0))

    first, _ = submit_rollback(store, "q", "p", force=False)
    store.cancel(first)  # it holds the number the next one names
    told, _ = submit_rollback(store, "q", "p", force=False, priority=Priority.NORMAL)

    assert [s.priority if (s := store.status(b)) else None for b in (first, told)] == [
        Priority.HIGH, Priority.NORMAL,
    ]  # fmt: skip
