"""Urgent work first, end to end: real workers, the simulator, one shared pace. A small
high batch submitted behind a big normal one is done before the big one sends 5 s of its
work, and the big one keeps going meanwhile (the issue's figure: 5 numbers behind 20,000
at 50/s, within 5 s; the seconds themselves: `python -m bench.priority`)."""

from __future__ import annotations

import time

import pytest
import redis

from jobs.operations.producer import BatchOptions
from jobs.queue.priority import Priority, queue_key
from jobs.store.interface import BatchState
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, csv_rows, progress, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e

HEADER = "id,provider,assistantId"
BIG, SMALL, RATE = 20_000, 5, 50


@pytest.mark.timeout(120)
def test_a_high_batch_behind_a_big_normal_one_goes_first(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(BIG + SMALL, seed=61)
    simulator.reset(numbers)
    # The urgent five are the account's newest: the high batch reads them from the first
    # page of the listing (one request), never from the 20 pages behind it.
    big, urgent = numbers[:BIG], numbers[BIG:]
    queue, workers = start_workers(count=2, concurrency=8, PHONEBATCH_RATE_LIMIT=str(RATE))
    # Every task of the big batch queued at once (no reads): 400 s of work at 50/s.
    store, big_id = submit_rows(
        redis_client, queue, HEADER, csv_rows(big, "asst_bulk"),
        options=BatchOptions(read_first=False),
    )  # fmt: skip
    assert redis_client.llen(queue_key(queue, Priority.NORMAL.level)) == BIG
    deadline = time.monotonic() + 30
    while progress(store, big_id) < 2 * RATE:  # the workers are busy with it
        assert time.monotonic() < deadline, store.status(big_id)
        time.sleep(0.05)

    submitted = time.monotonic()
    _, urgent_id = submit_rows(
        redis_client, queue, HEADER, csv_rows(urgent, "asst_urgent"),
        options=BatchOptions(priority=Priority.HIGH),
    )  # fmt: skip
    big_before = progress(store, big_id)
    final = wait_for_batch(store, urgent_id, workers, timeout=30)
    took = time.monotonic() - submitted
    big_during = progress(store, big_id) - big_before
    summary = (
        f"high batch done {took:.2f} s after its submit; the normal one sent {big_during} meanwhile"
    )
    print(summary)  # the seconds are measured by `python -m bench.priority`, not asserted
    assert final.state is BatchState.COMPLETED and final.counts.succeeded == SMALL, final
    assert final.priority is Priority.HIGH
    # Counted in the pace's own terms, not in seconds: before the high batch was done, the
    # normal one sent no more than 5 s of work at the pace (FIFO: all 19,900 left of it).
    assert big_during <= 5 * RATE, summary
    # And the big one still progresses.
    deadline = time.monotonic() + 30
    while progress(store, big_id) < big_before + big_during + RATE:
        assert time.monotonic() < deadline, f"the normal batch stopped: {summary}"
        time.sleep(0.05)
    state = simulator.numbers()
    assert all(state[str(n["id"])]["assistantId"] == "asst_urgent" for n in urgent)
    # The high batch read its numbers with one page of the listing, not all 21 pages.
    listings = [r for r in simulator.requests("GET") if r["id"] is None]
    assert len(listings) <= 2, listings

    store.cancel(big_id)  # done with it: the rest would take minutes
    assert wait_for_batch(store, big_id, workers, timeout=10).state is BatchState.CANCELLED
