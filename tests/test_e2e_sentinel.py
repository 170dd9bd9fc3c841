"""Redis failover under a running batch: a primary, a replica and three sentinels, real
`phonebatch worker` processes on a sentinel:// REDIS_URL, the primary SIGKILLed mid-batch
while the replica lags (its replication held for half a second), so outcomes the primary
acknowledged are lost. The batch finishes on the promoted replica with every item counted
once, and a rollback afterwards puts back the true previous values."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from config import load_settings
from jobs.cli.services import start_worker, stop
from jobs.operations.rollback import submit_rollback
from jobs.store.connection import connect
from jobs.store.interface import BatchState, BatchStatus, ItemStatus, iter_items
from jobs.store.keys import snapshots_key
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import worker_env
from tests.helpers import (
    QUICK_RECOVERY,
    Simulator,
    WorkerProcess,
    progress,
    submit_rows,
    wait_for_batch,
)
from tests.sentinel import SentinelGroup, start_sentinel_group

pytestmark = pytest.mark.e2e

HEADER = "id,provider,assistantId,name"
QUEUE = "q-sentinel"
TOTAL = 300


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = start_sentinel_group(tmp_path / "sentinel")
    try:
        yield started
    finally:
        started.stop()


def _client(group: SentinelGroup) -> redis.Redis:
    # As a worker's: a command cut off by the failover is sent again to the new primary.
    return connect(
        group.url, sentinel_master=group.master,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=15),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError],
    )  # fmt: skip


def _finish(store: RedisReportStore, batch_id: str, worker: WorkerProcess) -> BatchStatus:
    """The batch once done: nobody resumes it here, the workers must see it through."""
    deadline = time.monotonic() + 60
    while not (status := store.status(batch_id)) or not status.done:
        assert time.monotonic() < deadline, f"not done: {status}\n{worker.log_tail()}"
        assert worker.process.poll() is None, worker.log_tail()
        time.sleep(0.1)
    return status


def _assert_our_transport(group: SentinelGroup) -> None:
    from worker.app import create_app
    from worker.broker import SentinelChannel, SentinelTransport

    app = create_app(load_settings(redis_url=group.url, sentinel_master=group.master))
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, SentinelTransport)
        channel = connection.default_channel
        assert isinstance(channel, SentinelChannel)
        assert isinstance(channel.pool, SentinelConnectionPool)
        assert channel._pops_atomically([QUEUE])  # POP_AND_NOTE, as on plain redis://
        assert channel._create_client().info("server")["tcp_port"] == group.primary_port


@pytest.mark.timeout(150)
def test_a_failover_mid_batch_completes_with_exact_counts_and_true_snapshots(
    group: SentinelGroup, simulator: Simulator, tmp_path: Path
) -> None:
    _assert_our_transport(group)
    numbers = generate_numbers(TOTAL, seed=43)
    simulator.reset(numbers)
    # Requests in flight for 150 ms, so some outcomes are recorded while the replica lags;
    # reads older than 3 s read again by GET, so an item sent again finds its number
    # already changed and must rely on the snapshot kept before its first send.
    simulator.set_faults(latency_ms=150)
    env = worker_env(
        group.url, simulator, PHONEBATCH_QUEUE=QUEUE, PHONEBATCH_SENTINEL_MASTER=group.master,
        PHONEBATCH_RATE_LIMIT="60", PHONEBATCH_READ_MAX_AGE="3", **QUICK_RECOVERY,
        # Tasks the old primary lost come back by the workers' own sweeps: quick ones here.
        PHONEBATCH_HEARTBEAT_INTERVAL="1", PHONEBATCH_SELF_RESUME_AFTER="3",
    )  # fmt: skip
    log = tmp_path / "worker.log"
    worker = WorkerProcess(start_worker(env=env, concurrency=8, log=log), log)
    client = _client(group)
    try:
        rows = [f"{n['id']},{n['provider']},asst_failover,Moved {i}" for i, n in enumerate(numbers)]
        store, batch_id = submit_rows(client, QUEUE, HEADER, rows)
        while progress(store, batch_id) < TOTAL // 3:
            assert worker.process.poll() is None, worker.log_tail()
            time.sleep(0.02)
        _assert_snapshots_on_the_replica(group, store, batch_id)

        with group.replication_held():
            # Shorter than a snapshot's wait for a replica (1 s): no item is sent whose
            # snapshot the replica lacks; outcomes recorded meanwhile are lost.
            time.sleep(0.5)
            acknowledged = progress(store, batch_id)
            began = time.monotonic()
            old = group.kill_primary()
        failover = group.wait_for_failover(old)
        kept = progress(store, batch_id)  # on the new primary (workers add to it meanwhile)
        final = _finish(store, batch_id, worker)
        took = time.monotonic() - began

        assert final.state is BatchState.COMPLETED
        assert final.counts.as_dict() == {
            "total": TOTAL, "pending": 0, "succeeded": TOTAL, "failed": 0, "skipped": 0,
            "cancelled": 0,
        }  # fmt: skip
        items = list(iter_items(store, batch_id, TOTAL))
        assert len(items) == TOTAL and {r.status for r in items} == {ItemStatus.SUCCEEDED}
        state = simulator.numbers()
        assert all(state[str(n["id"])]["assistantId"] == "asst_failover" for n in numbers)
        # The worker reconnected on this module's transport, not kombu's own.
        connected = [line for line in log.read_text().splitlines() if "Connected to" in line]
        assert len(connected) >= 2 and all("SentinelTransport" in c for c in connected)
        sends = Counter(r["id"] for r in simulator.requests("PATCH"))
        again = [r for r in items if "earlier run" in str(r.extra.get("reason"))]
        assert all(r.extra.get("before") for r in again)  # the snapshot from before the send
        print(
            f"\nfailover {failover:.1f} s; batch done {took:.1f} s after the kill; "
            f"{acknowledged} outcomes on the old primary, {kept} on the new one after the "
            f"failover; {sum(1 for c in sends.values() if c > 1)} numbers sent twice, "
            f"{len(again)} found already sent by a run whose outcome was lost, "
            f"{final.resumed} self-resume(s)"
        )

        _roll_back_and_check(store, numbers, batch_id, worker, simulator)
    finally:
        stop(worker.process)
        client.close()


def _assert_snapshots_on_the_replica(
    group: SentinelGroup, store: RedisReportStore, batch_id: str
) -> None:
    """Every item sent so far had its snapshot on the replica before its PATCH (WAIT)."""
    done = [r for r in iter_items(store, batch_id, TOTAL) if r.status is ItemStatus.SUCCEEDED]
    replica = redis.Redis(port=group.replica_port)
    kept = replica.hmget(snapshots_key(batch_id), [str(r.index) for r in done])
    assert done and all(kept), f"{kept.count(None)} of {len(done)} snapshots not on the replica"


def _roll_back_and_check(
    store: RedisReportStore,
    numbers: list[dict[str, object]],
    batch_id: str,
    worker: WorkerProcess,
    simulator: Simulator,
) -> None:
    """A rollback puts back each number's own name and assistant: no snapshot was taken
    of a value the batch itself had sent."""
    child, plan = submit_rollback(store, QUEUE, batch_id, force=False)
    assert plan.left_out == []
    rolled = wait_for_batch(store, child, [worker], timeout=60)
    assert rolled.counts.succeeded == TOTAL, rolled.counts
    state = simulator.numbers()
    for number in numbers:
        now = state[str(number["id"])]
        assert (now["name"], now["assistantId"]) == (number["name"], number["assistantId"])
