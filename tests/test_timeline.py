"""A batch's timeline: the sender counts each request, 429 and error into the item's
tally, the process gathers tallies, and a write adds them to the batch's time buckets."""

from __future__ import annotations

import httpx
import pytest
import redis

from jobs.store.redis_store import RedisReportStore
from jobs.store.timeline import read
from tests.test_retry import Clock, _api, _policy, _sender
from worker.errors import DeliveryError
from worker.retry import Attempts
from worker.timeline import Unwritten, tallied


def test_every_request_429_and_error_is_counted_once(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=60)
    answers = iter([
        httpx.Response(429, headers={"Retry-After": "1"}, json={"message": "slow down"}),
        httpx.Response(503, json={"message": "busy"}),
        httpx.Response(200, json={"id": "n"}),
        httpx.Response(404, json={"message": "Phone number not found"}),
    ])  # fmt: skip
    sender = _sender(Clock(), _policy())
    unwritten = Unwritten()
    with tallied("b1", unwritten):
        sender.run(lambda: _api(answers).update_phone_number("n", "{}"), Attempts())
    with tallied("b1", unwritten), pytest.raises(DeliveryError):
        sender.run(lambda: _api(answers).update_phone_number("m", "{}"), Attempts())
    assert redis_client.exists("phonebatch:{b1}:timeline") == 0  # gathered, not yet written
    unwritten.write(store)  # what the pump does once a second
    totals = [
        sum(getattr(b, k) for b in read(redis_client, "b1"))
        for k in ("requests", "limited", "errors")
    ]
    assert totals == [4, 1, 2]  # the 503 and the 404 are errors; the 429 is counted apart
    assert 0 < redis_client.ttl("phonebatch:{b1}:timeline") <= 60


def test_an_item_that_sent_nothing_writes_nothing(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=60)
    unwritten = Unwritten()
    with tallied("b2", unwritten):
        pass
    unwritten.write(store)
    assert redis_client.exists("phonebatch:{b2}:timeline") == 0
