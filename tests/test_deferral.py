"""Items handed back wait in Redis until due, then return to the queue, once."""

from __future__ import annotations

import time

import redis

from jobs.queue.deferral import Deferrals
from jobs.queue.keys import deferred_key
from jobs.queue.messages import task_message
from jobs.queue.priority import queue_key, queue_keys
from worker.pump import deferral_pump


def test_due_items_go_back_to_the_queue_and_only_then(redis_client: redis.Redis) -> None:
    deferrals = Deferrals(redis_client, "q")
    deferrals.defer("soon", 0.2)
    deferrals.defer("later", 30)
    assert deferrals.release_due() == 0
    assert redis_client.llen("q") == 0
    time.sleep(0.25)
    assert deferrals.release_due() == 1
    assert redis_client.lrange("q", 0, -1) == [b"soon"]
    assert deferrals.release_due() == 0  # moved once, not twice
    assert deferrals.waiting() == 1
    assert redis_client.zscore(deferred_key("q"), "later") is not None


def test_each_due_message_goes_to_the_key_of_its_priority(redis_client: redis.Redis) -> None:
    deferrals = Deferrals(redis_client, "qp")
    messages = {
        level: task_message(
            task_name="t",
            task_id=f"t{level}",
            args_json="[]",
            queue="qp",
            origin="o",
            argsrepr="r",
            priority=level,
        )
        for level in (0, 3, 6, 9)
    }
    for message in messages.values():
        deferrals.defer(message, 0)
    deferrals.defer('{"properties": {"priority": 5}}', 0)  # kombu's steps: 5 is normal's
    deferrals.defer("not json", 0)  # kombu reads no priority: 0, the queue's own key
    assert deferrals.release_due() == 6
    found = [redis_client.lrange(key, 0, -1) for key in queue_keys("qp")]
    assert found == [
        [b"not json", messages[0].encode()],
        [b'{"properties": {"priority": 5}}', messages[3].encode()],
        [messages[6].encode()],
        [messages[9].encode()],
    ]
    assert queue_key("qp", 0) == "qp"


def test_the_pump_moves_items_in_the_background(redis_client: redis.Redis) -> None:
    deferrals = Deferrals(redis_client, "q2")
    pump = deferral_pump(deferrals, interval=0.05)
    pump.start()
    try:
        for n in range(700):
            deferrals.defer(f"m{n}", 0.05)
        deadline = time.monotonic() + 5
        while redis_client.llen("q2") < 700 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pump.stop()
    assert redis_client.llen("q2") == 700
    assert deferrals.waiting() == 0
