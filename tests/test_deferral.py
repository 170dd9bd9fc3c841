"""Items handed back wait in Redis until due, then return to the queue, once."""

from __future__ import annotations

import time

import redis

from jobs.queue.deferral import Deferrals
from jobs.queue.keys import deferred_key
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
