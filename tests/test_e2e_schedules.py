"""Schedules and webhooks end to end: real beat and worker processes, a receiving server."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import redis

from jobs.cli.services import start, stop
from jobs.operations.producer import BatchOptions
from jobs.operations.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, run_cli, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e

REPO = Path(__file__).parent.parent
SECRET = "webhook-secret-for-tests"
# The test receivers listen on http://127.0.0.1: internal, so allowed by name.
LOCAL_HOOKS = {"PHONEBATCH_WEBHOOK_ALLOW_HTTP": "true", "PHONEBATCH_WEBHOOK_ALLOWLIST": "127.0.0.1"}


def _example_numbers() -> list[dict[str, object]]:
    """Numbers with the ids of the README's example schedule, as twilio numbers."""
    numbers = generate_numbers(10, seed=61)
    twilio = [n for n in numbers if n["provider"] == "twilio"][:2]
    ids = ["6f1d2a4e-0b7c-4e8f-9a51-3c2d1e0f9a11", "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c44"]
    return [{**n, "id": i} for n, i in zip(twilio, ids, strict=True)]


def test_running_the_readme_example_schedule_now(
    redis_url: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    simulator.reset(_example_numbers())
    schedules = str(REPO / "config" / "schedules.toml")
    queue, _workers = start_workers(count=1, concurrency=4, PHONEBATCH_SCHEDULES=schedules)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue, "PHONEBATCH_SCHEDULES": schedules}

    listed = run_cli("schedules", "list", env=env)
    result = run_cli("schedules", "run", "after-hours", "--wait", "--json", env=env)

    assert "after-hours: 0 19 * * 1-5 (America/New_York)" in listed.stdout
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert batch["source"] == "schedule:after-hours"
    assert batch["counts"]["succeeded"] == 2
    assert {n["assistantId"] for n in simulator.numbers().values()} == {"asst_after_hours"}


def _tick_schedules(path: Path, ids: list[str]) -> Path:
    path.write_text(
        "[[schedule]]\n"
        'name = "tick"\n'
        'cron = "* * * * * *"\n'  # every second
        'timezone = "Europe/Paris"\n'
        'provider = "vonage"\n'
        f"ids = {json.dumps(ids)}\n"
        'set = { name = "ticked" }\n'
        # Slots a second apart: the next may fire while the last one's batch still holds
        # the numbers. Here every slot must fire.
        "allow_overlap = true\n"
    )
    return path


def _beat(redis_url: str, queue: str, schedules: Path, db: Path) -> object:
    env = {
        "REDIS_URL": redis_url,
        "PHONEBATCH_QUEUE": queue,
        "PHONEBATCH_SCHEDULES": str(schedules),
    }
    argv = [sys.executable, "-m", "jobs.cli", "beat", "--schedule-db", str(db)]
    return start(argv, env=env, log=db.with_suffix(".log"))


def test_two_beats_fire_each_slot_once(
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    tmp_path: Path,
) -> None:
    numbers = [n for n in generate_numbers(10, seed=62) if n["provider"] == "vonage"]
    simulator.reset(numbers)
    schedules = _tick_schedules(tmp_path / "schedules.toml", [str(n["id"]) for n in numbers])
    queue, workers = start_workers(count=1, concurrency=4, PHONEBATCH_SCHEDULES=str(schedules))
    beats = [_beat(redis_url, queue, schedules, tmp_path / f"beat{n}") for n in range(2)]
    try:
        time.sleep(6)
    finally:
        for process in beats:
            stop(process)  # type: ignore[arg-type]

    store = RedisReportStore(redis_client, retention_seconds=60)
    fired = [b for b in store.list_batches(limit=100) if b.source == "schedule:tick"]
    assert len(fired) >= 3, (tmp_path / "beat0.log").read_text()
    slots = [b.name.removeprefix("tick at ") for b in fired]
    assert len(set(slots)) == len(slots)  # each slot once, though two beats sent it
    assert len(redis_client.keys("phonebatch:schedule:tick:*")) == len(slots)
    logs = [(tmp_path / f"beat{n}.log").read_text() for n in range(2)]
    assert all("Sending due task tick" in text for text in logs)  # both beats were firing
    for batch in fired:
        counts = wait_for_batch(store, batch.batch_id, workers).counts
        assert counts.succeeded + counts.skipped == len(numbers)  # later ticks find them set


def test_a_bad_schedule_file_is_refused_at_start(redis_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "schedules.toml"
    bad.write_text(
        '[[schedule]]\nname = "nightly"\ncron = "0 19 * * 1-5"\n'
        'timezone = "Mars/Olympus"\nids = ["a"]\nset = { assistantId = "b" }\n'
    )
    result = run_cli("beat", env={"REDIS_URL": redis_url, "PHONEBATCH_SCHEDULES": str(bad)})
    assert result.returncode == 2
    assert "schedule 'nightly', field timezone" in result.stderr and "Mars/Olympus" in result.stderr


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


def _wait_webhook(store: RedisReportStore, batch_id: str) -> object:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = store.status(batch_id)
        if status and status.webhook and status.webhook.status in ("delivered", "failed"):
            return status.webhook
        time.sleep(0.1)
    raise AssertionError(f"no webhook outcome: {store.status(batch_id)}")


def test_a_finished_batch_posts_its_signed_summary(
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    numbers = generate_numbers(5, seed=63)
    simulator.reset(numbers)
    queue, _workers = start_workers(
        count=1, concurrency=4, PHONEBATCH_WEBHOOK_SECRET=SECRET, **LOCAL_HOOKS
    )
    store = RedisReportStore(redis_client, retention_seconds=60)
    rows = [f"{n['id']},{n['provider']},asst_w" for n in numbers]
    _, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows, webhook_url=url)

    webhook = _wait_webhook(store, batch_id)

    assert webhook.status == "delivered" and webhook.attempts == 1  # type: ignore[attr-defined]
    ((headers, body),) = handler.received
    assert verify(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], time.time())
    assert not verify(
        "wrong", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], time.time()
    )
    assert not verify(
        SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], time.time() + 3600
    )
    summary = json.loads(body)
    assert summary["event"] == "batch.finished"
    assert summary["batch"]["batch_id"] == batch_id and summary["batch"]["counts"]["succeeded"] == 5


def test_a_failing_webhook_is_retried_and_its_failure_shown(
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    receiver: tuple[str, type[_Receiver]],
    tmp_path: Path,
) -> None:
    url, handler = receiver
    handler.status = 503
    numbers = generate_numbers(2, seed=64)
    simulator.reset(numbers)
    queue, _workers = start_workers(
        count=1, concurrency=2, PHONEBATCH_WEBHOOK_SECRET=SECRET, **LOCAL_HOOKS
    )
    path = tmp_path / "b.csv"
    path.write_text("id,provider\n" + "".join(f"{n['id']},{n['provider']}\n" for n in numbers))
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue, **LOCAL_HOOKS}
    submitted = run_cli("submit", str(path), "--webhook", url, "--json", env=env)
    batch_id = json.loads(submitted.stdout)["batch_id"]
    store = RedisReportStore(redis_client, retention_seconds=60)

    webhook = _wait_webhook(store, batch_id)

    assert webhook.status == "failed" and webhook.attempts == 5  # type: ignore[attr-defined]
    assert webhook.error == "HTTP 503"  # type: ignore[attr-defined]
    assert len(handler.received) == 5
    status = json.loads(run_cli("status", batch_id, "--json", env=env).stdout)
    assert status["webhook"]["status"] == "failed"


def test_a_batch_that_pauses_itself_posts_batch_paused_then_batch_finished(
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    numbers = generate_numbers(6, seed=64)
    simulator.reset(numbers)
    queue, _workers = start_workers(
        count=1, concurrency=4, PHONEBATCH_WEBHOOK_SECRET=SECRET, **LOCAL_HOOKS
    )
    store = RedisReportStore(redis_client, retention_seconds=60)
    rows = [f"{n['id']},{n['provider']},asst_p" for n in numbers]
    _, batch_id = submit_rows(
        redis_client, queue, "id,provider,assistantId", rows, webhook_url=url,
        options=BatchOptions(canary=2),
    )  # fmt: skip

    deadline = time.monotonic() + 30
    while not handler.received:  # the canary's pause, told by the workers
        assert time.monotonic() < deadline, store.status(batch_id)
        time.sleep(0.1)
    store.continue_batch(batch_id, queue)
    _wait_webhook(store, batch_id)

    events = [json.loads(body) for _, body in handler.received]
    assert [e["event"] for e in events] == ["batch.paused", "batch.finished"]
    assert events[0]["batch"]["paused_by"] == "canary"
    headers, body = handler.received[0]
    assert verify(
        SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], time.time(),
        delivery=headers["X-Phonebatch-Delivery"],
    )  # fmt: skip
    assert len({h["X-Phonebatch-Delivery"] for h, _ in handler.received}) == 2
    assert events[1]["batch"]["counts"]["succeeded"] == 6
