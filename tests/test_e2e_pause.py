"""Cancel stops sends at once; pause holds a batch and continue lets it go on: real
workers pacing at 20 requests/s, the simulator's request log as the witness."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from typing import Any

import pytest
import redis

from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.store.interface import BatchState, ItemStatus, iter_items
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, WorkerProcess, run_cli, wait_for_batch

pytestmark = pytest.mark.e2e

SLACK = 0.2  # no request may arrive later than this after a cancel or a pause returned


def _submit(
    client: redis.Redis, queue: str, numbers: list[dict[str, Any]], *, read_first: bool
) -> tuple[RedisReportStore, str]:
    text = "id,provider,assistantId\n" + "".join(
        f"{n['id']},{n['provider']},asst_paused\n" for n in numbers
    )
    intake = read_batch(io.StringIO(text), Format.CSV)
    assert intake.ok, intake.errors
    store = RedisReportStore(client, retention_seconds=3600)
    batch_id = submit_batch(
        intake.items, store=store, broker=client, queue=queue, name="pause", source="cli",
        options=BatchOptions(read_first=read_first),
    )  # fmt: skip
    return store, batch_id


def _wait_for_done(
    store: RedisReportStore, batch_id: str, done: int, workers: list[WorkerProcess]
) -> None:
    deadline = time.monotonic() + 60
    while True:
        status = store.status(batch_id)
        assert status is not None
        if status.counts.total - status.counts.pending >= done:
            return
        if time.monotonic() > deadline or any(w.process.poll() is not None for w in workers):
            tails = "\n".join(w.log_tail() for w in workers)
            raise AssertionError(f"the batch made no progress: {status}\n{tails}")
        time.sleep(0.02)


def _late(requests: list[dict[str, Any]], moment: float) -> list[dict[str, Any]]:
    return [r for r in requests if r["at"] > moment + SLACK]


def test_no_request_starts_after_a_cancel_returns(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(200, seed=61)
    simulator.reset(numbers)
    queue, workers = start_workers(count=2, concurrency=8, PHONEBATCH_RATE_LIMIT="20")
    store, batch_id = _submit(redis_client, queue, numbers, read_first=True)
    _wait_for_done(store, batch_id, 40, workers)

    cancelled = store.cancel(batch_id)
    returned = time.time()

    assert cancelled is not None and cancelled.state is BatchState.CANCELLED
    wait_for_batch(store, batch_id, workers, timeout=30)
    deadline = time.monotonic() + 5
    while (status := store.status(batch_id)) and status.counts.pending:
        assert time.monotonic() < deadline, f"requests in flight were not recorded: {status}"
        time.sleep(0.05)
    time.sleep(1.0)  # anything still coming would come now
    requests = simulator.requests()
    patches = [r for r in requests if r["method"] == "PATCH"]
    assert _late(patches, returned) == [], f"cancel returned at {returned:.3f}"
    assert _late([r for r in requests if r["id"]], returned) == []  # nor a number's read
    final = store.status(batch_id)
    assert final is not None and final.state is BatchState.CANCELLED
    c = final.counts
    assert c.pending == 0 and c.succeeded + c.cancelled == 200
    assert c.cancelled > 100 and c.failed == c.skipped == 0
    items = {r.number_id: r.status for r in iter_items(store, batch_id, 200)}
    patched = Counter(r["id"] for r in patches)
    assert {i for i, s in items.items() if s is ItemStatus.SUCCEEDED} == set(patched)
    assert set(patched.values()) == {1}


def test_pause_holds_every_send_and_continue_finishes_the_batch_once(
    redis_url: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(100, seed=62)
    simulator.reset(numbers)
    queue, workers = start_workers(count=2, concurrency=8, PHONEBATCH_RATE_LIMIT="20")
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    store, batch_id = _submit(redis_client, queue, numbers, read_first=False)
    _wait_for_done(store, batch_id, 40, workers)

    paused = store.pause(batch_id)
    returned = time.time()

    assert paused is not None and paused.state is BatchState.PAUSED
    time.sleep(0.5)  # requests in flight at the pause land and are recorded
    held = store.status(batch_id)
    assert held is not None and held.state is BatchState.PAUSED
    time.sleep(1.0)
    still = store.status(batch_id)
    assert still is not None and still.state is BatchState.PAUSED
    assert still.counts == held.counts and held.counts.pending > 20
    assert _late(simulator.requests(), returned) == [], f"pause returned at {returned:.3f}"
    assert store.parked(batch_id)  # the queued tasks wait in the parked list

    shown = run_cli("status", batch_id, env=env)
    assert "state     paused" in shown.stdout, shown.stderr
    assert f"phonebatch continue {batch_id}" in shown.stdout
    as_json = json.loads(run_cli("status", batch_id, "--json", env=env).stdout)
    assert as_json["state"] == "paused" and as_json["stalled"] is False
    assert as_json["paused_at"] is not None
    refused = run_cli("resume", batch_id, env=env)
    assert refused.returncode == 1
    assert f"paused: run phonebatch continue {batch_id}" in refused.stderr

    went_on = run_cli("continue", batch_id, "--json", env=env)

    assert went_on.returncode == 0, went_on.stderr
    assert json.loads(went_on.stdout)["state"] == "running"
    final = wait_for_batch(store, batch_id, workers, timeout=30)
    assert final.state is BatchState.COMPLETED
    assert final.counts.succeeded == 100 and final.counts.pending == 0
    patched = Counter(r["id"] for r in simulator.requests("PATCH"))
    assert patched == Counter({n["id"]: 1 for n in numbers})  # each number exactly once
    assert store.parked(batch_id) == []
    again = run_cli("continue", batch_id, env=env)
    assert again.returncode == 1 and "is not paused (completed)" in again.stdout


def test_the_pause_continue_and_cancel_commands_of_a_batch_no_worker_took_yet(
    redis_url: str, redis_client: redis.Redis
) -> None:
    numbers = generate_numbers(5, seed=63)
    store, batch_id = _submit(redis_client, "q-nobody", numbers, read_first=False)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": "q-nobody"}

    paused = run_cli("pause", batch_id, "--json", env=env)

    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["state"] == "paused"
    again = run_cli("pause", batch_id, env=env)
    assert again.returncode == 0 and f"Batch {batch_id} paused" in again.stdout
    assert f"phonebatch continue {batch_id}" in again.stdout
    listed = run_cli("list", env=env).stdout
    assert batch_id in listed and "paused" in listed
    report = json.loads(run_cli("report", batch_id, "--format", "json", env=env).stdout)
    assert report["state"] == "paused" and report["counts"]["pending"] == 5

    cancelled = run_cli("cancel", batch_id, env=env)

    assert cancelled.returncode == 0 and f"Batch {batch_id} cancelled" in cancelled.stdout
    final = store.status(batch_id)
    assert final is not None and final.state is BatchState.CANCELLED
    assert (final.counts.cancelled, final.counts.pending) == (5, 0)
    late = run_cli("pause", batch_id, env=env)
    assert late.returncode == 1 and "had already cancelled" in late.stdout
    stuck = run_cli("continue", batch_id, env=env)
    assert stuck.returncode == 1 and "is not paused (cancelled)" in stuck.stdout
    missing = run_cli("continue", "20990101-000000-abcdef", env=env)
    assert missing.returncode == 2 and "no batch" in missing.stderr
