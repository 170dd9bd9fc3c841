"""The workers' Redis transport: kombu's, reusing one client per pool and letting the
report store settle a recorded item's message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from queue import Empty
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis

from jobs.operations.reaping import reap
from jobs.queue.liveness import HEARTBEATS_KEY, OWNERS_KEY
from jobs.queue.priority import TURNS, Priority, queue_key, take_order
from jobs.store.interface import ItemSeed, ItemStatus, NewBatch, Outcome, Receipt
from jobs.store.memory_store import MemoryReportStore
from jobs.store.redis_store import RedisReportStore
from worker.broker import POP_AND_NOTE, Channel, QoS, Transport, receipt_for
from worker.heartbeat import process_id

NORMAL = Priority.NORMAL.level


def test_one_client_per_pool_and_a_new_one_after_a_reconnect(redis_url: str) -> None:
    with Connection(redis_url, transport=Transport) as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.ping()
        channel._disconnect_pools()  # what kombu does when the connection is lost
        second = channel._create_client()
        assert second is not first and second.ping()
        assert channel._create_client(asynchronous=True) is not second


def test_the_celery_app_uses_it_for_plain_redis_only() -> None:
    from config import load_settings
    from worker.app import app, create_app

    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
    tls = create_app(load_settings(redis_url="rediss://redis.example:6380/0"))
    with tls.connection_for_write() as connection:
        # kombu's own transport, which turns TLS on for rediss://
        assert not isinstance(connection.transport, Transport)
        assert connection.transport_cls == "rediss" and connection.ssl


def test_it_steps_aside_for_kombus_transport_when_a_hook_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from config import load_settings
    from worker.app import create_app
    from worker.broker import missing_hooks, transport_path

    assert missing_hooks() == [] and transport_path() == "worker.broker:Transport"
    assert transport_path("kombu") == "redis"  # PHONEBATCH_BROKER_TRANSPORT=kombu
    monkeypatch.delattr(kombu_redis.Channel, "_flush_brpop_reauth")  # kombu 5.6 has none

    with caplog.at_level("WARNING", logger="worker.broker"):
        app = create_app(load_settings(redis_url="redis://127.0.0.1:1/0"))

    assert missing_hooks() == ["kombu.transport.redis.Channel._flush_brpop_reauth"]
    assert app.conf.broker_transport == "redis"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "_flush_brpop_reauth" in warnings[0]


def test_a_channel_without_an_instance_hook_goes_kombus_way(redis_url: str) -> None:
    with Connection(redis_url, transport=Transport) as connection:
        channel = connection.default_channel
        channel._has_blmove = True
        assert channel._pops_atomically(["q"])
        del channel._queue_cycle  # as if kombu set it up under another name
        assert not channel._pops_atomically(["q"])


def _batch(client: redis.Redis) -> RedisReportStore:
    store = RedisReportStore(client, retention_seconds=3600)
    seeds = [ItemSeed(i, row=i + 2, number_id=f"n{i}") for i in range(2)]
    store.create_batch(NewBatch("b1", name="t", source="cli", total=2), seeds)
    return store


def _done(store: RedisReportStore, index: int, receipt: Receipt | None) -> bool:
    current = store.item("b1", index)
    assert current is not None
    record = current.with_outcome(Outcome(ItemStatus.SUCCEEDED, 200, attempts=1), 1.0)
    return store.record_outcome("b1", record, receipt=receipt)


@pytest.fixture
def queue(redis_url: str, redis_client: redis.Redis) -> Iterator[Any]:
    """A kombu queue on our transport: what a Celery worker's consumer does, bare.
    After `redis_client`, whose flush would drop the queue's binding."""
    with Connection(redis_url, transport=Transport) as connection:
        simple = connection.SimpleQueue("broker-test")
        try:
            yield simple
        finally:
            simple.close()


def _delivered(queue: Any, task_id: str, payload: dict[str, int]) -> tuple[Any, Receipt]:
    queue.put(payload, headers={"id": task_id})
    message = queue.get(timeout=5)
    receipt = receipt_for(task_id)
    assert receipt is not None and receipt.tag == message.delivery_tag
    return message, receipt


def _no_round_trip(*_: Any, **__: Any) -> Any:
    raise AssertionError("kombu's ack went to Redis for a settled message")


def test_recording_an_item_settles_its_message_and_the_ack_stays_local(
    queue: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _batch(redis_client)
    message, receipt = _delivered(queue, "task-1", {"n": 1})
    assert redis_client.hexists(receipt.entries_key, receipt.tag)
    assert redis_client.zscore(receipt.index_key, receipt.tag) is not None
    assert redis_client.hget(OWNERS_KEY, receipt.tag) == process_id().encode()

    assert _done(store, 0, receipt) is True
    assert receipt.settled
    assert not redis_client.hexists(receipt.entries_key, receipt.tag)
    assert redis_client.zscore(receipt.index_key, receipt.tag) is None
    assert not redis_client.hexists(OWNERS_KEY, receipt.tag)  # the holder's note goes too

    monkeypatch.setattr(QoS, "_remove_from_indices", _no_round_trip)
    message.ack()
    assert receipt_for("task-1") is None
    assert message.acknowledged


def test_an_unsettled_message_put_back_comes_back_whole(
    queue: Any, redis_client: redis.Redis
) -> None:
    # Our script writes the unacked entry; kombu's restore must read it as its own.
    message, receipt = _delivered(queue, "task-4", {"n": 7})
    assert redis_client.zscore(receipt.index_key, receipt.tag) is not None
    message.requeue()
    again = queue.get(timeout=5)
    assert again.payload == {"n": 7} and again.headers["id"] == "task-4"
    again.ack()
    assert redis_client.hlen(receipt.entries_key) == 0
    assert redis_client.zcard(receipt.index_key) == 0


def test_a_message_whose_task_recorded_nothing_is_acked_by_kombu(
    queue: Any, redis_client: redis.Redis
) -> None:
    message, receipt = _delivered(queue, "task-2", {"n": 1})
    assert not receipt.settled
    message.ack()
    assert redis_client.hlen(receipt.entries_key) == 0
    assert redis_client.zcard(receipt.index_key) == 0
    assert receipt_for("task-2") is None


def test_an_item_recorded_already_still_settles_and_a_settled_message_is_not_requeued(
    queue: Any, redis_client: redis.Redis
) -> None:
    store = _batch(redis_client)
    assert _done(store, 1, None) is True
    message, receipt = _delivered(queue, "task-3", {"n": 1})
    assert _done(store, 1, receipt) is False  # a second run: its outcome stands
    assert receipt.settled and redis_client.hlen(receipt.entries_key) == 0
    message.requeue()  # what a Reject(requeue=True) does
    assert redis_client.llen("broker-test") == 0


def test_a_store_without_the_broker_leaves_the_receipt_to_kombu() -> None:
    store = MemoryReportStore()
    seeds = [ItemSeed(0, row=2, number_id="n0")]
    store.create_batch(NewBatch("b1", name="t", source="cli", total=1), seeds)
    current = store.item("b1", 0)
    assert current is not None
    receipt = Receipt("unacked_index", "unacked", "tag-1")
    record = current.with_outcome(Outcome(ItemStatus.SUCCEEDED, 200, attempts=1), 1.0)
    assert store.record_outcome("b1", record, receipt=receipt) is True
    assert not receipt.settled


def _kombus_two_steps(*_: Any, **__: Any) -> Any:
    raise AssertionError("the message was noted by kombu's pipeline, not by POP_AND_NOTE")


def test_the_channel_takes_a_message_and_notes_it_unacked_in_one_step(
    queue: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kombu_redis.QoS, "append", _kombus_two_steps)
    queue.put({"n": 1}, headers={"id": "task-8"})
    message = queue.get(timeout=5)
    assert redis_client.llen("broker-test") == 0
    assert redis_client.hexists("unacked", message.delivery_tag)
    assert redis_client.zscore("unacked_index", message.delivery_tag) is not None
    message.ack()
    assert redis_client.hlen("unacked") == 0


def test_the_script_writes_the_entry_kombu_restores_from(
    queue: Any, redis_client: redis.Redis
) -> None:
    queue.put({"n": 2}, headers={"id": "task-5"})
    raw = redis_client.lindex("broker-test", -1)
    assert raw is not None
    keys = ("unacked_index", "unacked", "beats", "owners", "broker-test")
    answer = redis_client.eval(POP_AND_NOTE, 5, *keys, 5.0, "host:1:ab")
    assert answer == [b"broker-test", raw]
    assert redis_client.llen("broker-test") == 0
    tag = json.loads(raw)["properties"]["delivery_tag"]
    assert redis_client.zscore("unacked_index", tag) == 5.0
    entry = redis_client.hget("unacked", tag)
    assert entry is not None
    assert json.loads(entry) == [json.loads(raw), "broker-test", "broker-test"]
    # Noted as this process's, and the process as alive (by the server's clock).
    assert redis_client.hget("owners", tag) == b"host:1:ab"
    seconds, _ = redis_client.time()
    assert abs((redis_client.zscore("beats", "host:1:ab") or 0) - seconds) < 5
    assert redis_client.eval(POP_AND_NOTE, 5, *keys, 6, "host:1:ab") is None


def test_a_message_the_script_cannot_read_is_left_to_kombus_brpop(
    queue: Any, redis_client: redis.Redis
) -> None:
    queue.put({"n": 3}, headers={"id": "task-6"})
    raw = json.loads(redis_client.rpop("broker-test") or b"")
    raw["properties"]["delivery_tag"] = 12345  # not a string: the script leaves it
    redis_client.lpush("broker-test", json.dumps(raw))
    keys = ("unacked_index", "unacked", "beats", "owners", "broker-test")
    assert redis_client.eval(POP_AND_NOTE, 5, *keys, 1, "host:1:ab") == [b"broker-test", None]
    assert redis_client.hlen("owners") == 0
    assert redis_client.llen("broker-test") == 1
    message = queue.get(timeout=5)
    assert message.payload == {"n": 3}
    message.ack()
    assert redis_client.llen("broker-test") == 0


def test_a_consumer_waiting_on_an_empty_queue_gets_what_comes_later(
    queue: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kombu_redis.QoS, "append", _kombus_two_steps)
    with pytest.raises(Empty):
        queue.get(timeout=0.3)  # the channel now waits instead of popping
    late = threading.Timer(
        0.3, lambda: queue.put({"n": 4}, headers={"id": "task-7"}, priority=NORMAL)
    )
    late.start()
    message = queue.get(timeout=5)
    late.join()
    assert message.payload == {"n": 4}
    assert redis_client.hlen("unacked") == 1
    message.ack()


def test_a_consumer_without_acks_leaves_no_unacked_entry(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # Nothing would ever remove one: kombu would deliver the message again later.
    with Connection(redis_url, transport=Transport) as connection:
        queue = connection.SimpleQueue("broker-test", no_ack=True)
        queue.put({"n": 5}, headers={"id": "task-9"})
        assert queue.get(timeout=5).payload == {"n": 5}
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0
        queue.close()


def test_waiting_keeps_the_queue_order_and_a_priority_message_still_comes(
    queue: Any, redis_client: redis.Redis
) -> None:
    with pytest.raises(Empty):
        queue.get(timeout=0.3)  # empty: the channel waits on normal's key

    def send() -> None:
        for n in range(3):
            queue.put({"n": n}, headers={"id": f"order-{n}"}, priority=NORMAL)

    late = threading.Timer(0.3, send)
    late.start()
    got = []
    for _ in range(3):
        message = queue.get(timeout=5)
        got.append(message.payload["n"])
        message.ack()
    late.join()
    assert got == [0, 1, 2]

    with pytest.raises(Empty):
        queue.get(timeout=0.3)
    queue.put({"n": 9}, headers={"id": "urgent"}, priority=0)  # high's key: not waited on
    message = queue.get(timeout=5)
    assert message.payload == {"n": 9}
    message.ack()


def test_an_idle_channel_waits_on_normals_key(
    queue: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, ...]] = []
    send_command = redis.connection.AbstractConnection.send_command

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(args)
        send_command(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", spy)
    with pytest.raises(Empty):
        queue.get(timeout=0.3)
    normal = queue_key("broker-test", NORMAL)
    assert ("BLMOVE", normal, normal, "LEFT", "LEFT") in [a[:5] for a in sent]


def _taken(waiting: set[int], turns: int) -> list[int]:
    """The step each of `turns` pops takes while every step of `waiting` holds messages."""
    return [next(s for s in take_order(turn) if s in waiting) for turn in range(turns)]


@pytest.mark.parametrize(
    ("waiting", "shares"),
    [
        ({0, 3, 6}, {0: 8, 3: 1, 6: 1}),  # high 8 of 10, normal and low one each
        ({0, 3}, {0: 8, 3: 2}),
        ({0, 6}, {0: 8, 6: 2}),
        ({3, 6}, {3: 9, 6: 1}),  # low is never starved by normal either
        ({6}, {6: 10}),
    ],
)
def test_every_priority_gets_its_share_of_the_pops(
    waiting: set[int], shares: dict[int, int]
) -> None:
    taken = _taken(waiting, 10 * TURNS)
    assert {step: taken.count(step) for step in waiting} == {
        step: share * 10 for step, share in shares.items()
    }
    # The shares hold over any 10 turns in a row, not only on average.
    for start in range(len(taken) - TURNS):
        window = taken[start : start + TURNS]
        assert all(window.count(step) == share for step, share in shares.items())


def test_the_channel_takes_in_the_weighted_order(queue: Any, redis_client: redis.Redis) -> None:
    for n in range(20):  # more of each than 20 pops take
        for level in (6, 3, 0):  # low first: the order is the channel's, not the arrival's
            queue.put({"n": n, "level": level}, headers={"id": f"p{level}-{n}"}, priority=level)
    levels = []
    for _ in range(20):
        message = queue.get(timeout=5)
        levels.append(message.payload["level"])
        message.ack()
    assert levels == _taken({0, 3, 6}, 20)
    assert levels[:10] == [0, 0, 0, 0, 3, 0, 0, 0, 0, 6]


def test_on_a_redis_without_blmove_kombus_own_commands_take_the_message(
    queue: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    kombus_append = kombu_redis.QoS.append

    def counted(self: Any, message: Any, delivery_tag: str) -> None:
        calls.append(delivery_tag)
        kombus_append(self, message, delivery_tag)

    monkeypatch.setattr(kombu_redis.QoS, "append", counted)
    queue.channel._has_blmove = False  # what a server older than 6.2 answers
    message, receipt = _delivered(queue, "task-10", {"n": 10})
    assert calls == [message.delivery_tag]  # kombu's BRPOP, then its pipeline
    assert redis_client.hexists(receipt.entries_key, receipt.tag)
    assert redis_client.hget(OWNERS_KEY, receipt.tag) == process_id().encode()  # noted too
    message.ack()
    assert redis_client.hlen(receipt.entries_key) == 0


def test_a_channel_that_cannot_give_its_messages_back_leaves_them_to_the_reaper(
    queue: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, receipt = _delivered(queue, "task-20", {"n": 20})
    held_by = process_id()
    assert redis_client.hget(OWNERS_KEY, receipt.tag) == held_by.encode()

    def redis_away(*_: Any, **__: Any) -> None:
        raise redis.ConnectionError("Redis restarting")

    monkeypatch.setattr(kombu_redis.QoS, "restore_unacked", redis_away)
    with pytest.raises(redis.ConnectionError):
        queue.channel.qos.restore_unacked()

    assert process_id() != held_by  # the old name stops beating and lapses
    seconds, _ = redis_client.time()
    redis_client.zadd(HEARTBEATS_KEY, {held_by: seconds - 60})
    assert reap(redis_client, 15, ["broker-test"]).restored == 1
    assert json.loads(redis_client.lindex("broker-test", 0) or b"")["headers"]["id"] == "task-20"
