"""Webhooks at least once, end to end: a worker SIGKILLed while it delivers a batch's
webhook (the receiver holds the request open), and another worker delivers it, with the
same delivery id. Real worker processes, Redis, the simulator and a receiving server."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from jobs.operations.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    delivery_id,
    verify,
)
from jobs.store.interface import WebhookState
from jobs.store.keys import WEBHOOKS_DELIVERING_KEY
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, WorkerProcess, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e

SECRET = "webhook-secret-for-tests"
HOOKS = {
    "PHONEBATCH_WEBHOOK_SECRET": SECRET,
    "PHONEBATCH_WEBHOOK_ALLOW_HTTP": "true",  # the receiver listens on http://127.0.0.1
    "PHONEBATCH_WEBHOOK_ALLOWLIST": "127.0.0.1",
    "PHONEBATCH_HEARTBEAT_INTERVAL": "1",  # dead after 3 s without a beat
}


@dataclass
class Received:
    """What the receiver saw: each request's headers and body, when it arrived."""

    requests: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    first: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Holding(BaseHTTPRequestHandler):
        """Keeps the first delivery waiting for an answer; answers the others 200."""

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.requests.append((dict(self.headers), body, time.monotonic()))
            if len(received.requests) == 1:
                received.first.set()
                received.release.wait(60)  # its sender is killed meanwhile
            try:
                self.send_response(200)
                self.end_headers()
            except OSError:
                pass  # the sender is gone

        def log_message(self, *args: object) -> None:
            pass

    return Holding


@pytest.fixture
def holding_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        received.release.set()
        server.shutdown()
        server.server_close()


def _deliverer(client: redis.Redis, batch_id: str, workers: list[WorkerProcess]) -> WorkerProcess:
    """The worker whose process holds the batch's webhook in flight."""
    owner = client.hget(WEBHOOKS_DELIVERING_KEY, batch_id)
    assert owner is not None, "no worker holds the webhook in flight"
    pid = int(owner.decode().split(":")[1])
    return next(w for w in workers if os.getpgid(pid) == w.process.pid)


@pytest.mark.timeout(120)
def test_a_worker_killed_while_delivering_a_webhook_leaves_it_to_another(
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    holding_receiver: tuple[str, Received],
) -> None:
    url, received = holding_receiver
    numbers = generate_numbers(4, seed=65)
    simulator.reset(numbers)
    queue, workers = start_workers(count=2, concurrency=2, **HOOKS)
    rows = [f"{n['id']},{n['provider']},asst_outbox" for n in numbers]
    store, batch_id = submit_rows(
        redis_client, queue, "id,provider,assistantId", rows, webhook_url=url
    )
    wait_for_batch(store, batch_id, workers)

    assert received.first.wait(30), "no delivery reached the receiver"
    killed = _deliverer(redis_client, batch_id, workers)
    assert _webhook(store, batch_id).status == "delivering"
    os.killpg(killed.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    killed.process.wait(timeout=10)
    survivor = next(w for w in workers if w is not killed)

    outcome = _wait_delivered(store, batch_id, timeout=30)
    redelivered_after = received.requests[1][2] - killed_at

    assert outcome.status == "delivered" and outcome.attempts == 1
    assert len(received.requests) == 2  # the killed one's, never answered, and the other's
    for headers, body, _ in received.requests:
        assert headers[DELIVERY_HEADER] == delivery_id(batch_id)
        stamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
        assert verify(SECRET, body, stamp, signature, time.time(), delivery=delivery_id(batch_id))
    assert redelivered_after < 10, f"delivered again {redelivered_after:.1f} s after the kill"
    assert "back in the outbox" in survivor.log.read_text()
    print(f"delivered again {redelivered_after:.2f} s after the kill")


def _webhook(store: RedisReportStore, batch_id: str) -> WebhookState:
    status = store.status(batch_id)
    assert status is not None and status.webhook is not None
    return status.webhook


def _wait_delivered(store: RedisReportStore, batch_id: str, timeout: float) -> WebhookState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        webhook = _webhook(store, batch_id)
        if webhook.status in ("delivered", "failed"):
            return webhook
        time.sleep(0.05)
    raise AssertionError(f"the webhook was not delivered again: {store.status(batch_id)}")
