"""Guardrails for live lines, end to end through the CLI, real workers and the simulator:
the failure guard pauses a batch that fails for good, a canary sends its first numbers
and pauses, and a batch (or a schedule) naming numbers another batch holds is refused."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.store.interface import BatchState, BatchStatus
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, WorkerProcess, run_cli, wait_for_batch

pytestmark = pytest.mark.e2e


def _csv(path: Path, rows: list[tuple[str, str]], assistant: str) -> Path:
    path.write_text(
        "id,provider,assistantId\n" + "".join(f"{i},{p},{assistant}\n" for i, p in rows)
    )
    return path


def _batch_id(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    batch_id: str = json.loads(result.stdout)["batch_id"]
    return batch_id


def _wait_for_pause(
    store: RedisReportStore, batch_id: str, workers: list[WorkerProcess], timeout: float = 30
) -> BatchStatus:
    """The batch once it paused itself and its requests in flight were recorded."""
    deadline = time.monotonic() + timeout
    settled: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        status = store.status(batch_id)
        assert status is not None and not status.done, status
        if status.state is BatchState.PAUSED:
            done = status.counts.total - status.counts.pending
            if settled is None or settled[1] != done:
                settled = (time.monotonic(), done)
            elif time.monotonic() - settled[0] > 1.0:
                return status
        assert all(w.process.poll() is None for w in workers), workers[0].log_tail()
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not pause: {store.status(batch_id)}")


def test_the_guard_pauses_a_batch_that_fails_for_good_and_no_guard_finishes_it(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, simulator: Simulator,
    start_workers: StartWorkers,
) -> None:  # fmt: skip
    numbers = generate_numbers(150, seed=71)
    simulator.reset(numbers)
    unknown = [(str(uuid.uuid4()), "vapi") for _ in numbers]
    known = [(n["id"], n["provider"]) for n in numbers]
    rows = [row for pair in zip(known, unknown, strict=True) for row in pair]
    queue, workers = start_workers(count=1, concurrency=4)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    path = _csv(tmp_path / "half-wrong.csv", rows, "asst_guarded")

    batch_id = _batch_id(run_cli("submit", str(path), "--json", env=env))
    store = RedisReportStore(redis_client, retention_seconds=3600)
    paused = _wait_for_pause(store, batch_id, workers)

    done = paused.counts.total - paused.counts.pending
    print(f"guard: paused after {done} outcomes, {len(simulator.requests('PATCH'))} PATCHes")
    assert paused.paused_by == "guard" and 50 <= done < 60, paused
    assert "of the last 50 outcomes failed for good" in (paused.paused_reason or "")
    assert len(simulator.requests("PATCH")) < 60
    shown = run_cli("status", batch_id, env=env)
    assert "because   guard:" in shown.stdout, shown.stdout
    report = json.loads(run_cli("report", batch_id, "--format", "json", env=env).stdout)
    assert report["state"] == "paused" and report["paused_by"] == "guard"

    went_on = run_cli("continue", batch_id, "--no-guard", env=env)
    assert went_on.returncode == 0, went_on.stderr
    final = wait_for_batch(store, batch_id, workers, timeout=60)
    assert final.state is BatchState.COMPLETED and not final.guard.on
    assert final.counts.succeeded == 150 and final.counts.failed == 150
    patched = Counter(r["id"] for r in simulator.requests("PATCH") if r["status"] == 200)
    assert set(patched) == {n["id"] for n in numbers} and set(patched.values()) == {1}


def test_a_canary_sends_its_numbers_pauses_and_continue_sends_the_rest_once(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, simulator: Simulator,
    start_workers: StartWorkers,
) -> None:  # fmt: skip
    numbers = generate_numbers(300, seed=72)
    simulator.reset(numbers)
    queue, workers = start_workers(count=1, concurrency=8)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    path = _csv(tmp_path / "move.csv", [(n["id"], n["provider"]) for n in numbers], "asst_canary")

    waited = run_cli("submit", str(path), "--canary", "10", "--wait", env=env)

    assert waited.returncode == 0, waited.stderr
    assert "paused: 300 numbers: 10 succeeded" in waited.stdout, waited.stdout
    assert "Paused itself: canary" in waited.stdout and "phonebatch rollback" in waited.stdout
    assert len(simulator.requests("PATCH")) == 10
    store = RedisReportStore(redis_client, retention_seconds=3600)
    batch_id = store.list_batches(0, 1)[0].batch_id
    time.sleep(0.5)  # nothing more goes out while it is paused
    assert len(simulator.requests("PATCH")) == 10
    paused = store.status(batch_id)
    assert paused is not None and paused.state is BatchState.PAUSED
    assert paused.paused_by == "canary" and paused.counts.succeeded == 10

    assert run_cli("continue", batch_id, env=env).returncode == 0
    final = wait_for_batch(store, batch_id, workers, timeout=60)

    assert final.counts.succeeded == 300 and final.counts.pending == 0
    patched = Counter(r["id"] for r in simulator.requests("PATCH"))
    assert len(patched) == 300 and set(patched.values()) == {1}


def test_numbers_another_batch_holds_are_refused_until_it_ends(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, simulator: Simulator,
    start_workers: StartWorkers,
) -> None:  # fmt: skip
    numbers = generate_numbers(60, seed=73)
    simulator.reset(numbers)
    queue, workers = start_workers(count=1, concurrency=4, PHONEBATCH_RATE_LIMIT="15")
    schedules = tmp_path / "schedules.toml"
    env = {
        "REDIS_URL": redis_url,
        "PHONEBATCH_QUEUE": queue,
        "PHONEBATCH_SCHEDULES": str(schedules),
    }
    rows = [(n["id"], n["provider"]) for n in numbers]
    first = _csv(tmp_path / "first.csv", rows, "asst_first")
    overlap = rows[-5:]  # sent last (the first batch goes in file order: --no-read)
    second = _csv(tmp_path / "second.csv", overlap, "asst_second")
    ids = ", ".join(f'"{i}"' for i, _ in overlap)
    schedules.write_text(
        f'[[schedule]]\nname = "night"\ncron = "0 19 * * *"\nids = [{ids}]\n'
        f'provider = "vapi"\nset = {{ assistantId = "asst_night" }}\n'
    )

    holder = _batch_id(run_cli("submit", str(first), "--no-read", "--json", env=env))
    refused = run_cli("submit", str(second), env=env)
    fired = run_cli("schedules", "run", "night", env=env)
    listed = run_cli("schedules", "list", env=env)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "5 of its numbers are being changed by another batch" in refused.stderr
    for number_id, _ in overlap:
        assert f"{number_id}  held by batch {holder}" in refused.stderr
    assert fired.returncode == 2 and holder in fired.stderr
    assert "last: skipped" in listed.stdout and holder in listed.stdout
    store = RedisReportStore(redis_client, retention_seconds=3600)
    assert [b.batch_id for b in store.list_batches(0, 10)] == [holder]

    wait_for_batch(store, holder, workers, timeout=30)
    accepted = _batch_id(run_cli("submit", str(second), "--json", env=env))
    final = wait_for_batch(store, accepted, workers, timeout=30)
    assert final.counts.succeeded == 5
    assert {simulator.numbers()[i]["assistantId"] for i, _ in overlap} == {"asst_second"}
