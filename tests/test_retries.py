"""A retry is the same kind of batch as its parent."""

from __future__ import annotations

import redis

from jobs.operations.retries import retry_failed
from jobs.store.interface import BatchMode, ItemSeed, ItemStatus, NewBatch, Outcome
from jobs.store.redis_store import RedisReportStore


def _failed_batch(store: RedisReportStore, mode: BatchMode) -> None:
    seeds = [ItemSeed(0, 2, "n0", '{"provider":"vapi","name":"x"}', '{"name":"y"}')]
    store.create_batch(NewBatch("p", "t", "cli", total=1, mode=mode, rollback_of="orig"), seeds)
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
