"""Batches queued by the previous release finish after an upgrade: the Redis keys and task
messages phonebatch 00b186e wrote (before the package split) are run by today's workers.

`tests/fixtures/queued_before_upgrade.json` was written by that release's own code (see
`tests/fixtures/make_queued_before_upgrade.py`): a batch waiting on its listing task and
one with an update task per number on the queue."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.queue.priority import queue_length
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, wait_for_batch

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).with_name("fixtures") / "queued_before_upgrade.json"


def _restore(client: redis.Redis, entry: dict[str, Any]) -> None:
    def raw(text: str) -> bytes:
        return base64.b64decode(text)

    key, kind, value = raw(entry["key"]), entry["type"], entry["value"]
    if kind == "string":
        client.set(key, raw(value))
    elif kind == "list":
        client.rpush(key, *[raw(v) for v in value])
    elif kind == "hash":
        client.hset(key, mapping={raw(k): raw(v) for k, v in value.items()})
    elif kind == "zset":
        client.zadd(key, {raw(member): score for member, score in value})
    else:
        raise AssertionError(f"a {kind} in the fixture")


def test_batches_queued_by_the_previous_release_finish_after_the_upgrade(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    fixture = json.loads(FIXTURE.read_text())
    numbers = generate_numbers(fixture["count"], seed=fixture["seed"])
    simulator.reset(numbers)
    for entry in fixture["keys"]:
        _restore(redis_client, entry)
    store = RedisReportStore(redis_client, retention_seconds=3600)
    assert [store.status(b).counts.pending for b in fixture["batch_ids"]] == [6, 6]  # type: ignore[union-attr]

    _, workers = start_workers(count=1, concurrency=4, queue=fixture["queue"])
    finals = [wait_for_batch(store, b, workers, timeout=60) for b in fixture["batch_ids"]]

    assert [f.counts.succeeded for f in finals] == [6, 6], finals
    assert sum(1 for _ in simulator.requests("PATCH")) == fixture["count"]
    now = simulator.numbers()
    assert all(now[n["id"]]["assistantId"] == fixture["target"] for n in numbers)
    assert queue_length(redis_client, fixture["queue"]) == 0
