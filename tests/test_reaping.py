"""A dead worker process's messages go back to the queue once, a live one's stay: the
reaper against a real Redis, with the transport's notes written as it writes them."""

from __future__ import annotations

import json

import redis

from jobs.operations.reaping import reap
from jobs.queue.keys import UNACKED_INDEX_KEY, UNACKED_KEY
from jobs.queue.liveness import HEARTBEATS_KEY, OWNERS_KEY
from jobs.queue.priority import queue_keys

QUEUE = "q-reap"


def _hold(
    client: redis.Redis, tag: str, owner: str, queue: str = QUEUE, priority: int | None = None
) -> dict[str, object]:
    """A message noted as held by `owner`, as POP_AND_NOTE notes it."""
    info = {"exchange": "", "routing_key": queue}
    properties: dict[str, object] = {"delivery_tag": tag, "delivery_info": info}
    if priority is not None:
        properties["priority"] = priority
    message = {"body": "e30=", "headers": {"id": tag, "task": "t"}, "properties": properties}
    client.zadd(UNACKED_INDEX_KEY, {tag: 1.0})
    client.hset(UNACKED_KEY, tag, json.dumps([message, "", queue]))
    client.hset(OWNERS_KEY, tag, owner)
    return message


def _beat(client: redis.Redis, owner: str, ago: float) -> None:
    seconds, micros = client.time()
    client.zadd(HEARTBEATS_KEY, {owner: seconds + micros / 1e6 - ago})


def test_a_dead_processs_messages_go_back_once_and_a_live_ones_stay(
    redis_client: redis.Redis,
) -> None:
    _beat(redis_client, "dead", ago=60)
    _beat(redis_client, "alive", ago=1)
    _hold(redis_client, "t1", "dead")
    _hold(redis_client, "t2", "dead")
    _hold(redis_client, "t3", "alive")

    first = reap(redis_client, 15, [QUEUE])
    second = reap(redis_client, 15, [QUEUE])

    assert (first.dead, first.restored) == (("dead",), 2)
    assert (second.dead, second.restored) == ((), 0)
    queued = [json.loads(m) for m in redis_client.lrange(QUEUE, 0, -1)]
    assert sorted(m["headers"]["id"] for m in queued) == ["t1", "t2"]
    assert all(m["headers"]["redelivered"] for m in queued)
    assert [t.decode() for t in redis_client.hkeys(UNACKED_KEY)] == ["t3"]
    assert redis_client.zrange(UNACKED_INDEX_KEY, 0, -1) == [b"t3"]
    assert redis_client.hgetall(OWNERS_KEY) == {b"t3": b"alive"}
    # Among the beats this test wrote: the session's worker (conftest) beats here too.
    beats = redis_client.zrange(HEARTBEATS_KEY, 0, -1)
    assert [b for b in beats if b in (b"alive", b"dead")] == [b"alive"]


def test_a_message_goes_back_to_the_key_of_its_priority(redis_client: redis.Redis) -> None:
    _beat(redis_client, "dead", ago=60)
    for tag, level in (("high", 0), ("normal", 3), ("low", 6)):
        _hold(redis_client, tag, "dead", priority=level)

    assert reap(redis_client, 15, [QUEUE]).restored == 3

    found = [[json.loads(m)["headers"]["id"] for m in redis_client.lrange(key, 0, -1)]
             for key in queue_keys(QUEUE)]  # fmt: skip
    assert found == [["high"], ["normal"], ["low"], []]


def test_a_message_acked_meanwhile_is_not_restored_and_its_note_goes(
    redis_client: redis.Redis,
) -> None:
    _beat(redis_client, "alive", ago=0)
    _hold(redis_client, "t1", "alive")
    redis_client.hdel(UNACKED_KEY, "t1")  # kombu's own ack: the owner note stays behind

    reaped = reap(redis_client, 15, [QUEUE])

    assert (reaped.restored, reaped.pruned) == (0, 1)
    assert redis_client.hlen(OWNERS_KEY) == 0 and redis_client.llen(QUEUE) == 0


def test_a_message_for_another_queue_waits_for_a_worker_of_that_queue(
    redis_client: redis.Redis,
) -> None:
    _beat(redis_client, "dead", ago=60)
    _hold(redis_client, "t1", "dead", queue="other")

    mine = reap(redis_client, 15, [QUEUE])
    theirs = reap(redis_client, 15, ["other"])

    assert (mine.restored, mine.dead) == (0, ())
    assert (theirs.restored, theirs.dead) == (1, ("dead",))
    assert redis_client.llen("other") == 1 and redis_client.llen(QUEUE) == 0


def test_one_sweep_at_a_time(redis_client: redis.Redis) -> None:
    _beat(redis_client, "dead", ago=60)
    _hold(redis_client, "t1", "dead")
    redis_client.set("phonebatch:reaper", "someone else", px=5000)

    assert reap(redis_client, 15, [QUEUE]).restored == 0
    redis_client.delete("phonebatch:reaper")
    assert reap(redis_client, 15, [QUEUE]).restored == 1


def test_a_message_taken_again_by_a_live_worker_keeps_its_new_holder(
    redis_client: redis.Redis,
) -> None:
    _beat(redis_client, "dead", ago=60)
    _beat(redis_client, "alive", ago=0)
    _hold(redis_client, "t1", "dead")
    redis_client.hset(OWNERS_KEY, "t1", "alive")  # restored, then popped by a live worker

    assert reap(redis_client, 15, [QUEUE]).restored == 0
    assert redis_client.hget(OWNERS_KEY, "t1") == b"alive"
    assert redis_client.hexists(UNACKED_KEY, "t1") and redis_client.llen(QUEUE) == 0


def test_after_an_outage_that_silenced_everyone_nobody_is_taken_for_dead_at_once(
    redis_client: redis.Redis,
) -> None:
    _beat(redis_client, "me", ago=60)  # the sweeper's own beat lapsed too: Redis was away
    _beat(redis_client, "other", ago=60)
    _hold(redis_client, "t1", "other")

    assert reap(redis_client, 15, [QUEUE], me="me").restored == 0
    _beat(redis_client, "me", ago=0)  # its heartbeat is back; the other stayed silent
    assert reap(redis_client, 15, [QUEUE], me="me").restored == 1
