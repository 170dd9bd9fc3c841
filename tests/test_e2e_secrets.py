"""Secrets leave with the item: after a cancel, no secret body value is anywhere in Redis
(the report store, the queue, kombu's unacked entries, the hand-back set), while the
batch's sent items keep only redacted bodies."""

from __future__ import annotations

import io
import time

import pytest
import redis

from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.operations.producer import submit_batch
from jobs.queue.keys import UNACKED_KEY, deferred_key
from jobs.queue.priority import queue_length
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, wait_for_batch

pytestmark = pytest.mark.e2e

SECRET = "SECRET-twilio-token-5e1b"


def _everything(client: redis.Redis) -> bytes:
    """Every value of every key, as bytes: what a look inside Redis would find."""
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            found.append(client.get(key) or b"")
        elif kind == "list":
            found.extend(client.lrange(key, 0, -1))
        elif kind == "hash":
            found.extend(v for pair in client.hgetall(key).items() for v in pair)
        elif kind == "zset":
            found.extend(client.zrange(key, 0, -1))
        elif kind == "set":
            found.extend(client.smembers(key))
        found.append(key)
    return b"\n".join(found)


def test_no_secret_is_kept_anywhere_after_a_cancel(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = [n for n in generate_numbers(600, seed=83) if n["provider"] == "twilio"][:100]
    simulator.reset(numbers)
    queue, workers = start_workers(count=1, concurrency=4, PHONEBATCH_RATE_LIMIT="20")
    text = "id,provider,assistantId,twilioAuthToken\n" + "".join(
        f"{n['id']},twilio,asst_secret,{SECRET}-{i}\n" for i, n in enumerate(numbers)
    )
    intake = read_batch(io.StringIO(text), Format.CSV)
    store = RedisReportStore(redis_client, retention_seconds=3600)
    batch_id = submit_batch(
        intake.items, store=store, broker=redis_client, queue=queue, name="secrets",
        source="cli",
    )  # fmt: skip
    assert SECRET.encode() in _everything(redis_client)  # kept while the items wait
    deadline = time.monotonic() + 60
    while (status := store.status(batch_id)) and status.counts.succeeded < 15:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)

    store.cancel(batch_id)
    final = wait_for_batch(store, batch_id, workers)
    # The workers take what is left on the queue, find it cancelled, and acknowledge it.
    deadline = time.monotonic() + 30
    while (
        queue_length(redis_client, queue)
        or redis_client.hlen(UNACKED_KEY)
        or redis_client.zcard(deferred_key(queue))
    ):
        assert time.monotonic() < deadline, "the queue did not drain"
        time.sleep(0.1)

    assert final.counts.cancelled > 0 and final.counts.succeeded >= 15
    assert SECRET.encode() not in _everything(redis_client)
    sent = store.bodies(batch_id, list(range(len(numbers))))
    assert sent and all("twilioAuthToken" in b and SECRET not in b for b in sent.values())
