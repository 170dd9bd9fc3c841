"""Nothing lost, nothing counted twice: workers killed, Redis restarted, batches cancelled,
retried and resumed, with real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from jobs.cli.services import free_port, start_redis_server, start_worker, stop
from jobs.operations.producer import BatchOptions
from jobs.operations.recovery import census
from jobs.queue.keys import UNACKED_INDEX_KEY, UNACKED_KEY
from jobs.queue.priority import Priority, queue_key
from jobs.store.interface import BatchState, ItemStatus, iter_items
from jobs.store.keys import batch_key
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers, worker_env
from tests.helpers import (
    QUICK_RECOVERY,
    Simulator,
    WorkerProcess,
    csv_rows,
    run_cli,
    submit_rows,
    wait_for_batch,
    wait_for_progress,
)

pytestmark = pytest.mark.e2e

HEADER = "id,provider,assistantId"


@pytest.mark.timeout(240)
def test_a_redis_restart_mid_batch_keeps_every_worker_and_loses_nothing(
    tmp_path: Path, simulator: Simulator
) -> None:
    """Workers ride out a Redis restart: no process exits (kombu's own transport can,
    docs/upstream/kombu-reconnect.md) and no one has to `resume` anything."""
    port = free_port()
    directory = tmp_path / "redis-aof"
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis_server(port, directory, appendonly=True)
    workers: list[WorkerProcess] = []
    try:
        client = redis.Redis.from_url(url)
        numbers = generate_numbers(600, seed=42)
        simulator.reset(numbers)
        simulator.set_faults(latency_ms=20)
        # No pace: consumers that keep taking tasks are the ones kombu's bug caught.
        env = worker_env(url, simulator, PHONEBATCH_QUEUE="q-restart", PHONEBATCH_RATE_LIMIT="0")
        for n in range(3):  # one Celery process each: nothing would start one that exits
            log = tmp_path / f"worker-{n}.log"
            workers.append(WorkerProcess(start_worker(env=env | QUICK_RECOVERY, log=log), log))
        store, batch_id = submit_rows(client, "q-restart", HEADER, csv_rows(numbers, "asst_r"))
        wait_for_progress(store, batch_id, 150)

        stop(server)  # SIGTERM: Redis writes its append-only file and exits
        server = start_redis_server(port, directory, appendonly=True)

        # Tasks held when Redis went down come back after the visibility timeout (16 s).
        final = wait_for_batch(store, batch_id, workers, timeout=150)  # fails if one exits
        assert final.state is BatchState.COMPLETED
        assert final.counts.as_dict() == {
            "total": 600, "pending": 0, "succeeded": 600, "failed": 0, "skipped": 0,
            "cancelled": 0,
        }  # fmt: skip
        items = list(iter_items(store, batch_id, 600))
        assert len(items) == 600 and {r.status for r in items} == {ItemStatus.SUCCEEDED}
        state = simulator.numbers()
        assert all(state[str(n["id"])]["assistantId"] == "asst_r" for n in numbers)
        assert all(w.process.poll() is None for w in workers)
        for worker in workers:
            text = worker.log.read_text(errors="replace")
            assert "Connection to broker lost" in text  # the restart really reached it
            assert "Unrecoverable error" not in text, worker.log_tail()
    finally:
        for worker in workers:
            stop(worker.process)
        stop(server)


def test_cancel_mid_batch_sends_nothing_more_for_cancelled_items(
    redis_url: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(300, seed=43)
    simulator.reset(numbers)
    queue, workers = start_workers(count=2, concurrency=8, PHONEBATCH_RATE_LIMIT="20")
    store, batch_id = submit_rows(redis_client, queue, HEADER, csv_rows(numbers, "asst_x"))
    wait_for_progress(store, batch_id, 40)

    result = run_cli("cancel", batch_id, env={"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue})
    cancelled_at = time.time()

    assert result.returncode == 0, result.stderr
    assert f"Batch {batch_id} cancelled" in result.stdout
    final = wait_for_batch(store, batch_id, workers, timeout=30)
    deadline = time.monotonic() + 10
    while (
        (status := store.status(batch_id)) and status.counts.pending and time.monotonic() < deadline
    ):
        time.sleep(0.05)  # requests in flight at the cancel finish and are recorded
    assert status is not None and status.state is BatchState.CANCELLED
    assert status.counts.pending == 0
    assert status.counts.succeeded + status.counts.cancelled == 300
    assert status.counts.cancelled > 150
    items = {r.number_id: r.status for r in iter_items(store, batch_id, 300)}
    patches = simulator.requests("PATCH")
    sent = {r["id"] for r in patches}
    assert all(items[i] is ItemStatus.SUCCEEDED for i in sent)
    late = [r for r in patches if r["at"] > cancelled_at and items[r["id"]] is ItemStatus.CANCELLED]
    assert late == []
    assert final.state is BatchState.CANCELLED
    time.sleep(1.0)
    assert len(simulator.requests("PATCH")) == len(patches)  # and nothing at all later


def test_retry_makes_a_linked_batch_of_the_failed_items(
    redis_url: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(15, seed=44)
    simulator.reset(numbers[:10])  # the last five are unknown to the API for now
    queue, workers = start_workers(count=1, concurrency=4)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    store, parent_id = submit_rows(redis_client, queue, HEADER, csv_rows(numbers, "asst_y"))
    first = wait_for_batch(store, parent_id, workers)
    assert (first.counts.succeeded, first.counts.failed) == (10, 5)
    simulator.reset(numbers)  # now the API knows them

    result = run_cli("retry", parent_id, "--wait", "--json", env=env)

    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    assert child["parent_id"] == parent_id
    assert child["counts"]["total"] == 5 and child["counts"]["succeeded"] == 5
    parent = json.loads(run_cli("status", parent_id, "--json", env=env).stdout)
    assert parent["retried_by"] == [child["batch_id"]]
    rows = [r.row for r in iter_items(store, child["batch_id"], 5)]
    assert rows == [12, 13, 14, 15, 16]  # the rows of the original file
    again = run_cli("retry", child["batch_id"], env=env)
    assert again.returncode == 1 and "no failed items" in again.stderr


@pytest.fixture
def lost_batch(redis_client: redis.Redis) -> tuple[RedisReportStore, str, str]:
    numbers = generate_numbers(50, seed=45)
    # One task per number from the start (no listing first): the test loses some of them.
    store, batch_id = submit_rows(
        redis_client, "q-lost", HEADER, csv_rows(numbers, "asst_z"),
        options=BatchOptions(read_first=False),
    )  # fmt: skip
    return store, batch_id, "q-lost"


def test_status_says_stalled_and_resume_reenqueues_exactly_the_missing(
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    lost_batch: tuple[RedisReportStore, str, str],
    tmp_path: Path,
) -> None:
    store, batch_id, queue = lost_batch
    normal = queue_key(queue, Priority.NORMAL.level)  # where the batch's tasks wait
    simulator.reset(generate_numbers(50, seed=45))
    # Lose 20 of the 50 tasks (as a Redis without persistence would on a restart), and
    # strand 5 more in `unacked` as a killed worker leaves them.
    for _ in range(20):
        redis_client.lpop(normal)
    for n in range(5):
        message = redis_client.rpop(normal)
        assert message is not None
        envelope = json.loads(message)
        tag = f"dead-worker-{n}"
        redis_client.hset(UNACKED_KEY, tag, json.dumps([envelope, "", queue]))
        # Delivered 200 s ago: past the longest a task can run (so stranded), not yet past
        # the visibility timeout (so kombu in any running worker has not restored it).
        redis_client.zadd(UNACKED_INDEX_KEY, {tag: time.time() - 200})
    redis_client.hset(batch_key(batch_id), "created_at", f"{time.time() - 3600:.6f}")
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    before = json.loads(run_cli("status", batch_id, "--json", env=env).stdout)
    assert before["stalled"] is False  # 25 tasks are still queued: not stalled yet
    for _ in range(25):
        redis_client.rpop(normal)  # now none is left but the stranded five
    stalled = run_cli("status", batch_id, env=env)
    assert "stalled" in stalled.stdout and f"phonebatch resume {batch_id}" in stalled.stdout

    resumed = run_cli("resume", batch_id, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert "45 items re-enqueued, 5 tasks of stopped workers put back" in resumed.stdout
    found = census(redis_client, queue, batch_id, stale_after=60)
    assert found.queued == set(range(50)) and not found.stranded
    log = tmp_path / "w.log"
    env_worker = worker_env(redis_url, simulator, PHONEBATCH_QUEUE=queue)
    worker = WorkerProcess(start_worker(env=env_worker, concurrency=8, log=log), log)
    try:
        final = wait_for_batch(store, batch_id, [worker])
    finally:
        stop(worker.process)
    assert final.counts.succeeded == 50
    assert len(simulator.requests("PATCH")) == 50  # each exactly once
    after = json.loads(run_cli("status", batch_id, "--json", env=env).stdout)
    assert after["stalled"] is False
