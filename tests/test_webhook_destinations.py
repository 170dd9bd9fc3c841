"""Webhooks go only where they should: https to public addresses, unless the settings
allow http or name an internal host; checked at submit and again right before a worker
connects (so a name that later resolves inside is refused too)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest
import redis

from jobs.operations.destinations import Destinations, webhook_problem
from tests.helpers import run_cli, stored
from worker.webhook_pump import WebhookFailed, post_once, webhook_pump

STRICT = Destinations()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://127.0.0.1/h", "internal address"),
        ("https://[::1]/h", "internal address"),
        ("https://0x7f000001/h", "internal address"),
        ("https://2130706433/h", "internal address"),
        ("https://127.1/h", "internal address"),
        ("https://[::ffff:127.0.0.1]/h", "internal address"),
        ("https://169.254.169.254/latest/meta-data", "internal address"),
        ("https://10.0.0.5:6379/", "internal address"),
        ("https://localhost/h", "internal address"),
        ("http://hooks.example.com/h", "must be an https URL"),
        ("file:///etc/passwd", "must be an https URL"),
        ("gopher://hooks.example.com/", "must be an https URL"),
        ("https://hooks.example.com:99999/", "not a URL"),
        ("https:///h", "no host"),
    ],
)
def test_a_webhook_to_an_internal_address_or_another_scheme_is_refused(url: str, said: str) -> None:
    problem = STRICT.url_problem(url)
    assert problem is not None and said in problem


def test_public_https_passes_and_the_allowlist_opens_what_it_names() -> None:
    assert STRICT.url_problem("https://hooks.example.com/t?k=1") is None
    allowed = Destinations.parse(True, "127.0.0.1, 10.1.0.0/16, hooks.internal")
    assert allowed.url_problem("http://127.0.0.1:9000/h") is None
    assert allowed.url_problem("https://10.1.2.3/h") is None
    assert allowed.url_problem("https://hooks.internal/h") is None
    assert allowed.url_problem("https://10.2.0.1/h") is not None
    problem = webhook_problem("https://user:pw@127.0.0.1/h", STRICT)
    assert problem is not None and "pw" not in problem  # shown without its credentials


def _resolving_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_a_name_that_resolves_inside_is_refused_right_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _resolving_to(monkeypatch, "10.0.0.7")  # DNS rebinding: public at submit, internal now
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with pytest.raises(WebhookFailed) as refused:
        post_once(client, "https://hooks.example.com/h", b"{}", "s", STRICT, delivery="d")
    assert not refused.value.retryable and "not allowed" in str(refused.value)
    assert sent == []


def test_the_request_goes_to_the_checked_address_with_the_name_for_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _resolving_to(monkeypatch, "93.184.216.34")
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    post_once(client, "https://u:p@hooks.example.com:8443/h?x=1", b"{}", "s", STRICT, delivery="d")

    (request,) = sent
    assert str(request.url) == "https://93.184.216.34:8443/h?x=1"
    assert request.headers["Host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["Authorization"].startswith("Basic ")


def test_delivery_errors_are_told_in_generic_words(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving_to(monkeypatch, "93.184.216.34")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(WebhookFailed) as failed:
        post_once(client, "https://hooks.example.com/h", b"{}", "s", STRICT, delivery="d")
    assert str(failed.value) == "no answer from the receiver"


class _Store:
    """The store's webhook side, for the pump: two batches due, outcomes noted."""

    def __init__(self, urls: dict[str, str]) -> None:
        from jobs.store.interface import BatchState, BatchStatus, Counts, WebhookState

        self.due = list(urls)
        self.statuses = {
            b: BatchStatus(b, b, "cli", BatchState.COMPLETED, Counts(total=1, succeeded=1), 0.0,
                           webhook=WebhookState(url))
            for b, url in urls.items()
        }  # fmt: skip
        self.recorded: dict[str, float] = {}
        self.lock = threading.Lock()

    def take_due_webhook(self, owner: str) -> str | None:
        with self.lock:
            return self.due.pop(0) if self.due else None

    def status(self, batch_id: str) -> Any:
        return self.statuses[batch_id]

    def record_webhook(self, batch_id: str, *_: Any, **__: Any) -> None:
        self.recorded[batch_id] = time.monotonic()


def test_one_slow_receiver_delays_no_other_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving_to(monkeypatch, "93.184.216.34")
    release = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["Host"] == "slow.example.com":
            release.wait(10)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    store = _Store({"slow": "https://slow.example.com/h", "fast": "https://fast.example.com/h"})
    pump = webhook_pump(store, "secret", STRICT, interval=0.02, client=client)  # type: ignore[arg-type]
    pump.start()
    try:
        deadline = time.monotonic() + 5
        while "fast" not in store.recorded and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "fast" in store.recorded and "slow" not in store.recorded
    finally:
        release.set()
        pump.stop()


def test_the_cli_refuses_an_internal_webhook_at_submit_and_writes_nothing(
    tmp_path: Any, redis_url: str, redis_client: redis.Redis
) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("id,provider,assistantId\nn1,vapi,asst_1\n")
    for url in ("https://127.0.0.1:6379/x", "file:///etc/passwd"):
        done = run_cli("submit", str(path), "--webhook", url, env={"REDIS_URL": redis_url})
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "webhook" in done.stderr
    assert stored(redis_client) == {}
