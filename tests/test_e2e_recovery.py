"""Nothing needs a human: a killed worker's tasks come back in seconds (heartbeats), and a
batch whose tasks were lost resumes by itself; real workers, Redis and the simulator."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from jobs.queue.priority import queue_keys, queue_length
from jobs.store.interface import BatchState, ItemStatus, iter_items
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, csv_rows, submit_rows, wait_for_batch, wait_for_progress

pytestmark = pytest.mark.e2e

HEADER = "id,provider,assistantId"


@pytest.mark.timeout(180)
def test_a_killed_worker_hosts_tasks_come_back_within_seconds_not_the_visibility_timeout(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(600, seed=51)
    simulator.reset(numbers)
    simulator.set_faults(latency_ms=20)
    # Two worker hosts at the default visibility timeout (300 s); a 2 s heartbeat keeps the
    # test short (the default 5 s: done about 18 s after the kill, bench/soak.py uses it).
    queue, workers = start_workers(
        count=2, concurrency=8, PHONEBATCH_RATE_LIMIT="40", PHONEBATCH_HEARTBEAT_INTERVAL="2"
    )
    store, batch_id = submit_rows(redis_client, queue, HEADER, csv_rows(numbers, "asst_beat"))

    wait_for_progress(store, batch_id, 180)  # 30%
    os.killpg(workers[0].process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    workers[0].process.wait(timeout=10)
    held = redis_client.hlen("unacked")

    final = wait_for_batch(store, batch_id, [workers[1]], timeout=120)
    took = time.monotonic() - killed_at

    assert held > 0, "the killed worker held no task: the test shows nothing"
    assert took < 45, f"the batch took {took:.0f} s after the kill"
    assert final.state is BatchState.COMPLETED
    assert final.counts.as_dict() == {
        "total": 600, "pending": 0, "succeeded": 600, "failed": 0, "skipped": 0, "cancelled": 0,
    }  # fmt: skip
    assert {r.status for r in iter_items(store, batch_id, 600)} == {ItemStatus.SUCCEEDED}
    state = simulator.numbers()
    assert all(state[str(n["id"])]["assistantId"] == "asst_beat" for n in numbers)
    assert len({r["id"] for r in simulator.requests("PATCH")}) == 600
    assert "put back on the queue" in workers[1].log.read_text()


@pytest.mark.timeout(120)
def test_a_batch_whose_queued_tasks_were_lost_resumes_by_itself(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(150, seed=52)
    simulator.reset(numbers)
    queue, workers = start_workers(
        count=1, concurrency=4, PHONEBATCH_RATE_LIMIT="40", PHONEBATCH_SELF_RESUME_AFTER="2"
    )
    store, batch_id = submit_rows(redis_client, queue, HEADER, csv_rows(numbers, "asst_lost"))
    wait_for_progress(store, batch_id, 30)

    lost = queue_length(redis_client, queue)
    redis_client.delete(*queue_keys(queue))  # every queued task gone; the batch's records stay

    final = wait_for_batch(store, batch_id, workers, timeout=90)

    assert lost > 80, "too few tasks were queued to lose: the test shows nothing"
    assert final.state is BatchState.COMPLETED
    assert final.counts.as_dict() == {
        "total": 150, "pending": 0, "succeeded": 150, "failed": 0, "skipped": 0, "cancelled": 0,
    }  # fmt: skip
    assert final.resumed >= 1 and final.resumed_at is not None  # and the status says so
    state = simulator.numbers()
    assert all(state[str(n["id"])]["assistantId"] == "asst_lost" for n in numbers)
    assert "had stalled" in workers[0].log.read_text()
