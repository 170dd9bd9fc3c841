"""Webhooks at least once: a batch's end puts its webhook in the outbox, a deliverer takes
it into flight as its own and takes it out with the outcome, and a dead deliverer's webhook
goes back to the outbox exactly once (a live one's stays). Both stores, and Redis for the
sweep; every delivery of a batch's webhook carries the same delivery id."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
import redis

from jobs.operations.destinations import Destinations
from jobs.operations.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    delivery_id,
    payload,
    verify,
)
from jobs.queue.liveness import HEARTBEATS_KEY
from jobs.store.interface import ItemSeed, ItemStatus, NewBatch, Outcome, ReportStore
from jobs.store.keys import WEBHOOKS_DELIVERING_KEY, WEBHOOKS_DUE_KEY, batch_key
from jobs.store.memory_store import MemoryReportStore
from jobs.store.redis_store import RedisReportStore
from worker.webhook_pump import _sending, send

URL = "https://hooks.example.com/h"
LAPSE = 15.0


@pytest.fixture
def redis_store(redis_client: redis.Redis) -> RedisReportStore:
    return RedisReportStore(redis_client, retention_seconds=3600)


def _ended(store: ReportStore, batch_id: str = "b1") -> None:
    """A one-item batch with a webhook, ended: its webhook is in the outbox."""
    store.create_batch(
        NewBatch(batch_id, name="t", source="cli", total=1, webhook_url=URL),
        [ItemSeed(0, row=2, number_id="n0")],
    )
    current = store.item(batch_id, 0)
    assert current is not None
    done = current.with_outcome(Outcome(ItemStatus.SUCCEEDED, 200, 1), finished_at=1.0)
    assert store.record_outcome(batch_id, done)


def _webhook_status(store: ReportStore, batch_id: str = "b1") -> str:
    status = store.status(batch_id)
    assert status is not None and status.webhook is not None
    return status.webhook.status


def _beat(client: redis.Redis, owner: str, ago: float) -> None:
    seconds, micros = client.time()
    client.zadd(HEARTBEATS_KEY, {owner: seconds + micros / 1e6 - ago})


def test_a_taken_webhook_is_one_deliverers_until_its_outcome(store: ReportStore) -> None:
    _ended(store)
    assert _webhook_status(store) == "pending"

    assert store.take_due_webhook("w1") == "b1"
    assert store.take_due_webhook("w2") is None  # one deliverer only
    assert _webhook_status(store) == "delivering"
    store.record_webhook("b1", "delivered", 1, None, owner="w1")

    status = store.status("b1")
    assert status is not None and status.webhook is not None
    assert (status.webhook.status, status.webhook.attempts) == ("delivered", 1)
    assert store.take_due_webhook("w1") is None


def test_a_delivery_that_ended_without_an_outcome_goes_back_once(store: ReportStore) -> None:
    _ended(store)
    assert store.take_due_webhook("w1") == "b1"

    store.give_back_webhook("b1", "w2")  # not w2's: nothing moves
    assert _webhook_status(store) == "delivering" and store.take_due_webhook("w2") is None
    store.give_back_webhook("b1", "w1")
    store.give_back_webhook("b1", "w1")  # once only

    assert _webhook_status(store) == "pending"
    assert store.take_due_webhook("w2") == "b1"
    assert store.take_due_webhook("w3") is None


def test_a_late_failure_never_hides_a_delivery(store: ReportStore) -> None:
    _ended(store)
    assert store.take_due_webhook("w1") == "b1"
    store.record_webhook("b1", "delivered", 2, None, owner="w2")  # the one that took over
    store.record_webhook("b1", "failed", 5, "HTTP 503", owner="w1")  # taken for dead
    assert _webhook_status(store) == "delivered"


def test_a_dead_deliverers_webhook_goes_back_once_and_a_live_ones_stays(
    redis_client: redis.Redis, redis_store: RedisReportStore
) -> None:
    _ended(redis_store, "b-dead")
    _ended(redis_store, "b-live")
    _beat(redis_client, "dead", ago=60)
    _beat(redis_client, "alive", ago=1)
    taken = {redis_store.take_due_webhook("dead"), redis_store.take_due_webhook("alive")}
    assert taken == {"b-dead", "b-live"}  # which one each took is the set's choice
    owners = {
        k.decode(): v.decode() for k, v in redis_client.hgetall(WEBHOOKS_DELIVERING_KEY).items()
    }
    dead_batch = next(b for b, o in owners.items() if o == "dead")
    live_batch = next(b for b, o in owners.items() if o == "alive")

    first = redis_store.return_lapsed_webhooks(LAPSE)
    second = redis_store.return_lapsed_webhooks(LAPSE)

    assert (first, second) == ([dead_batch], [])
    assert redis_client.smembers(WEBHOOKS_DUE_KEY) == {dead_batch.encode()}
    assert redis_client.hgetall(WEBHOOKS_DELIVERING_KEY) == {live_batch.encode(): b"alive"}
    assert _webhook_status(redis_store, dead_batch) == "pending"
    assert _webhook_status(redis_store, live_batch) == "delivering"
    assert redis_store.take_due_webhook("other") == dead_batch
    assert redis_store.take_due_webhook("other") is None


def test_a_deliverer_the_reaper_forgot_counts_as_dead(
    redis_client: redis.Redis, redis_store: RedisReportStore
) -> None:
    _ended(redis_store)
    assert redis_store.take_due_webhook("gone") == "b1"  # never in, or reaped from, the beats

    assert redis_store.return_lapsed_webhooks(LAPSE) == ["b1"]


def test_many_sweepers_put_a_webhook_back_once(
    redis_client: redis.Redis, redis_store: RedisReportStore
) -> None:
    _ended(redis_store)
    assert redis_store.take_due_webhook("dead") == "b1"
    back: list[str] = []
    lock = threading.Lock()

    def sweep() -> None:
        found = RedisReportStore(redis.Redis(connection_pool=redis_client.connection_pool),
                                 retention_seconds=3600).return_lapsed_webhooks(LAPSE)  # fmt: skip
        with lock:
            back.extend(found)

    sweepers = [threading.Thread(target=sweep) for _ in range(8)]
    for thread in sweepers:
        thread.start()
    for thread in sweepers:
        thread.join()

    assert back == ["b1"]
    assert redis_client.scard(WEBHOOKS_DUE_KEY) == 1


def test_a_deliverer_taken_for_dead_that_delivers_after_all_ends_it(
    redis_client: redis.Redis, redis_store: RedisReportStore
) -> None:
    _ended(redis_store)
    assert redis_store.take_due_webhook("slow") == "b1"
    assert redis_store.return_lapsed_webhooks(LAPSE) == ["b1"]  # silent too long

    redis_store.record_webhook("b1", "delivered", 1, None, owner="slow")

    assert _webhook_status(redis_store) == "delivered"
    assert redis_client.scard(WEBHOOKS_DUE_KEY) == 0  # not delivered a needless second time
    assert redis_store.take_due_webhook("other") is None


def test_a_webhook_whose_batch_is_gone_is_dropped(
    redis_client: redis.Redis, redis_store: RedisReportStore
) -> None:
    _ended(redis_store, "b1")
    _ended(redis_store, "b2")
    assert redis_store.take_due_webhook("dead") is not None
    redis_client.delete(batch_key("b1"), batch_key("b2"))  # both expired

    assert redis_store.return_lapsed_webhooks(LAPSE) == []
    assert redis_store.take_due_webhook("w") is None
    assert redis_client.exists(WEBHOOKS_DUE_KEY, WEBHOOKS_DELIVERING_KEY) == 0


def test_the_delivery_id_is_the_batchs_and_the_events_only() -> None:
    one = delivery_id("b1")
    assert one == delivery_id("b1", "batch.finished")
    assert len({one, delivery_id("b2"), delivery_id("b1", "batch.other")}) == 3
    first = payload({"batch_id": "b1", "webhook": {"status": "delivering", "attempts": 0}})
    again = payload({"batch_id": "b1", "webhook": {"status": "pending", "attempts": 3}})
    assert first != again  # the outbox entry was rewritten between the two deliveries
    assert b'"delivery_id":"' + one.encode() + b'"' in first and one.encode() in again


def test_every_attempt_carries_the_delivery_id_and_the_signed_body_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("worker.webhook_pump._resolved", lambda *_: "93.184.216.34")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503 if len(seen) < 3 else 200)

    store = MemoryReportStore()
    _ended(store)
    assert store.take_due_webhook("w1") == "b1"
    client = httpx.Client(transport=httpx.MockTransport(answer))
    monkeypatch.setattr("worker.webhook_pump.wait_random_exponential", lambda **_: lambda _: 0)
    send(store, client, "b1", "s3cret", rules=Destinations(), owner="w1")

    assert {r.headers[DELIVERY_HEADER] for r in seen} == {delivery_id("b1")} and len(seen) == 3
    last = seen[-1]
    stamp, signature = last.headers[TIMESTAMP_HEADER], last.headers[SIGNATURE_HEADER]
    now = float(stamp)
    assert verify("s3cret", last.content, stamp, signature, now, delivery=delivery_id("b1"))
    assert not verify("s3cret", last.content, stamp, signature, now, delivery=delivery_id("b2"))
    assert _webhook_status(store) == "delivered"


def test_a_delivery_waits_for_redis_to_answer_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker.webhook_pump._resolved", lambda *_: "93.184.216.34")
    monkeypatch.setattr("worker.webhook_pump.wait_random_exponential", lambda **_: lambda _: 0)
    store = MemoryReportStore()
    _ended(store)
    assert store.take_due_webhook("w1") == "b1"
    reads = iter([redis.ConnectionError("Redis is restarting")])
    real_status = store.status

    def status(batch_id: str) -> object:
        if (failure := next(reads, None)) is not None:
            raise failure
        return real_status(batch_id)

    monkeypatch.setattr(store, "status", status)
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200)))

    _sending(store, client, "s3cret", Destinations(), "w1")("b1")

    assert _webhook_status(store) == "delivered"


def test_a_batch_that_paused_itself_sends_batch_paused_with_its_own_delivery_id(
    monkeypatch: pytest.MonkeyPatch, store: ReportStore
) -> None:
    monkeypatch.setattr("worker.webhook_pump._resolved", lambda *_: "93.184.216.34")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    store.create_batch(
        NewBatch("b1", name="t", source="cli", total=3, webhook_url=URL, canary=1),
        [ItemSeed(i, row=i + 2, number_id=f"n{i}") for i in range(3)],
    )
    store.claim("b1", 0, 60, "t0")
    store.claim("b1", 1, 60, "t1")  # past the canary: the batch pauses itself
    entry = store.take_due_webhook("w1")
    assert entry == "b1|paused"
    client = httpx.Client(transport=httpx.MockTransport(answer))
    send(store, client, entry, "s3cret", rules=Destinations(), owner="w1")

    body = json.loads(seen[0].content)
    assert body["event"] == "batch.paused" and body["batch"]["paused_by"] == "canary"
    expected = delivery_id("b1", "batch.paused", 1)
    assert seen[0].headers[DELIVERY_HEADER] == expected == body["delivery_id"]
    assert expected != delivery_id("b1")  # the end's webhook has its own id
    assert store.take_due_webhook("w1") is None
    status = store.status("b1")
    assert status is not None and status.webhook is not None
    assert status.webhook.status == "waiting"  # the end's webhook is still to come
