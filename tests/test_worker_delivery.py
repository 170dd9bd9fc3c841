"""The worker's delivery of one item, with scripted HTTP answers and the in-memory store."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from config import Settings
from jobs.store import ItemSeed, ItemStatus, NewBatch
from jobs.store_memory import MemoryReportStore
from worker.delivery import WorkItem, deliver
from worker.errors import (
    AuthError,
    NetworkError,
    RateLimited,
    RejectedError,
    ServerError,
    api_error_message,
    is_retryable,
)
from worker.limiter import Limiter, MemoryLimiterBackend, Pace
from worker.retry import Deferred, RetryingSender, RetryPolicy
from worker.vapi import MissingApiKey, VapiApi, build_api

Handler = Callable[[httpx.Request], httpx.Response]
BODY = {"provider": "twilio", "assistantId": "asst_1", "twilioAuthToken": "tok"}


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"vapi_api_key": "k-123", "vapi_base_url": "http://vapi.test/"}
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[arg-type,call-arg]


def _api(handler: Handler) -> VapiApi:
    return build_api(_settings(), transport=httpx.MockTransport(handler))


def _store() -> MemoryReportStore:
    store = MemoryReportStore()
    store.create_batch(NewBatch("b", "t", "cli", total=1), [ItemSeed(0, 2, "num/1")])
    return store


ITEM = WorkItem("b", 0, 2, "num/1", BODY)


def _one_attempt() -> RetryingSender:
    limiter = Limiter(MemoryLimiterBackend(Pace(0)), max_pause=0, sleep=lambda _: None)
    return RetryingSender(RetryPolicy(max_attempts=1), limiter, sleep=lambda _: None)


def _no_hand_back(item: WorkItem, deferred: Deferred) -> None:
    raise AssertionError(f"unexpected hand-back: {deferred}")


def _deliver(store: MemoryReportStore, api: VapiApi) -> object:
    return deliver(ITEM, api=api, store=store, sender=_one_attempt(), hand_back=_no_hand_back)


def test_the_patch_goes_to_the_number_with_the_key_and_only_the_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "num/1"})

    store = _store()
    record = _deliver(store, _api(handler))

    assert record is not None and record.status is ItemStatus.SUCCEEDED
    assert [r.method for r in seen] == ["GET", "PATCH"]  # read first, then write
    request = seen[1]
    assert request.method == "PATCH"
    assert str(request.url) == "http://vapi.test/phone-number/num%2F1"
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == BODY
    stored = store.item("b", 0)
    assert stored is not None
    assert (stored.http_status, stored.attempts, stored.error) == (200, 1, None)
    assert stored.sent == {"provider": "twilio", "assistantId": "asst_1", "twilioAuthToken": "***"}


@pytest.mark.parametrize(
    ("status", "payload", "message"),
    [
        (400, {"message": ["property x should not exist", "y bad"], "error": "Bad Request",
               "statusCode": 400},
         "property x should not exist; y bad"),
        (404, {"message": "Phone number not found", "error": "Not Found", "statusCode": 404},
         "Phone number not found"),
        (422, {"error": "Unprocessable", "statusCode": 422}, "Unprocessable"),
        (409, None, "HTTP 409 Conflict"),
    ],
)  # fmt: skip
def test_a_rejected_update_fails_with_the_apis_own_message(
    status: int, payload: object, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if payload is None:
            return httpx.Response(status, text="<html>")
        return httpx.Response(status, json=payload)

    store = _store()
    record = _deliver(store, _api(handler))

    assert record is not None
    assert (record.status, record.http_status, record.attempts, record.error) == (
        ItemStatus.FAILED, status, 1, message,
    )  # fmt: skip
    counts = store.status("b")
    assert counts is not None and counts.counts.failed == 1


def test_an_item_with_an_outcome_is_not_sent_again() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={})

    store, api = _store(), _api(handler)
    assert _deliver(store, api) is not None
    assert _deliver(store, api) is None
    assert len(calls) == 2  # one GET and one PATCH, once


def test_errors_are_classified_at_the_boundary() -> None:
    answers = {
        "/phone-number/a": httpx.Response(429, json={"message": "slow down"}),
        "/phone-number/b": httpx.Response(503, json={"message": "busy"}),
        "/phone-number/c": httpx.Response(401, json={"message": "Invalid Key"}),
        "/phone-number/d": httpx.Response(404, json={"message": "nope"}),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/phone-number/e":
            raise httpx.ReadTimeout("slow", request=request)
        if request.url.path == "/phone-number/f":
            raise httpx.RemoteProtocolError("dropped", request=request)
        return answers[request.url.path]

    api = _api(handler)
    expected = {"a": RateLimited, "b": ServerError, "c": AuthError, "d": RejectedError}
    expected |= {"e": NetworkError, "f": NetworkError}
    for number_id, kind in expected.items():
        with pytest.raises(kind) as caught:
            api.update_phone_number(number_id, "{}")
        assert is_retryable(caught.value) is (kind in (RateLimited, ServerError, NetworkError))


def test_timeouts_are_explicit_and_the_key_is_required() -> None:
    api = build_api(_settings(connect_timeout=1.5, read_timeout=7))
    assert api.timeout == httpx.Timeout(connect=1.5, read=7, write=10, pool=5)
    with pytest.raises(MissingApiKey):
        build_api(_settings(vapi_api_key=None))


def test_api_error_message_shapes() -> None:
    assert api_error_message({"message": ["a", "b"]}, "x") == "a; b"
    assert api_error_message({"message": "m", "error": "e"}, "x") == "m"
    assert api_error_message({"error": "e"}, "x") == "e"
    assert api_error_message("text", "fallback") == "fallback"


def test_a_duplicate_delivery_is_handed_back_not_dropped() -> None:
    store = _store()
    assert store.claim("b", 0, 60, "first-run").claim.value == "claimed"
    handed: list[float] = []

    def hand_back(item: WorkItem, deferred: Deferred) -> None:
        handed.append(deferred.delay)

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("a duplicate must not send")

    result = deliver(
        ITEM, api=_api(handler), store=store, sender=_one_attempt(), hand_back=hand_back,
        owner="second-run",
    )  # fmt: skip
    assert result is None
    assert len(handed) == 1 and 60 < handed[0] <= 61  # back once the other lease is over
    status = store.status("b")
    assert status is not None and status.counts.pending == 1


def test_an_unexpected_error_fails_the_item_visibly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    store = _store()
    record = _deliver(store, _api(handler))
    assert record is not None
    assert record.status is ItemStatus.FAILED  # type: ignore[attr-defined]
    assert "internal error" in (record.error or "")  # type: ignore[attr-defined]


def test_an_update_sent_by_a_run_that_died_counts_as_succeeded() -> None:
    import time

    store = _store()
    store.claim("b", 0, 0.01, "killed-run")  # it sent the PATCH, then died unrecorded
    time.sleep(0.02)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "GET", "already in the target state: nothing to send"
        return httpx.Response(200, json=BODY | {"id": "num/1"})

    record = deliver(
        ITEM, api=_api(handler), store=store, sender=_one_attempt(), hand_back=_no_hand_back,
        owner="redelivered",
    )  # fmt: skip
    assert record is not None and record.status is ItemStatus.SUCCEEDED
    assert record.extra["reason"].startswith("sent by an earlier run")
    fresh = _store()
    again = deliver(
        ITEM, api=_api(handler), store=fresh, sender=_one_attempt(), hand_back=_no_hand_back
    )
    assert again is not None and again.status is ItemStatus.SKIPPED  # nobody had sent it


def test_workers_use_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.vapi import _proxy_for

    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    assert _proxy_for("https://api.vapi.ai") == "http://proxy.internal:3128"
    assert _proxy_for("https://sim.corp.example") is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("NO_PROXY")
    assert _proxy_for("https://api.vapi.ai") is None
