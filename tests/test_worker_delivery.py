"""The worker's delivery of one item, with scripted HTTP answers and the in-memory store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from config import Settings
from jobs.store.interface import BatchState, Claim, ItemRecord, ItemSeed, ItemStatus, NewBatch
from jobs.store.memory_store import MemoryReportStore
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
from worker.retry import Attempts, Deferred, RetryingSender, RetryPolicy
from worker.vapi import MissingApiKey, VapiApi, build_api

Handler = Callable[[httpx.Request], httpx.Response]
BODY = {"provider": "twilio", "assistantId": "asst_1", "twilioAuthToken": "tok"}


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"vapi_api_key": "k-123", "vapi_base_url": "http://vapi.test/"}
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[arg-type,call-arg]


def _api(handler: Handler) -> VapiApi:
    return build_api(_settings(), transport=httpx.MockTransport(handler))


def _store(read_first: bool = True) -> MemoryReportStore:
    store = MemoryReportStore()
    batch = NewBatch("b", "t", "cli", total=1, read_first=read_first)
    store.create_batch(batch, [ItemSeed(0, 2, "num/1", json.dumps(BODY))])
    return store


ITEM = WorkItem("b", 0, 2, "num/1", BODY)


def _sender(policy: RetryPolicy, sleep: Callable[[float], None] = lambda _: None) -> RetryingSender:
    limiter = Limiter(MemoryLimiterBackend(Pace(0)), max_pause=0, sleep=lambda _: None)
    return RetryingSender(policy, limiter, sleep=sleep)


def _one_attempt() -> RetryingSender:
    return _sender(RetryPolicy(max_attempts=1))


def _no_hand_back(item: WorkItem, deferred: Deferred) -> None:
    raise AssertionError(f"unexpected hand-back: {deferred}")


def _no_park(item: WorkItem, attempts: Attempts) -> None:
    raise AssertionError(f"unexpected park: {attempts}")


def _deliver(store: MemoryReportStore, api: VapiApi) -> object:
    return deliver(
        ITEM, api=api, store=store, sender=_one_attempt(), hand_back=_no_hand_back,
        park=_no_park,
    )  # fmt: skip


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
        park=_no_park, owner="second-run",
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
        park=_no_park, owner="redelivered",
    )  # fmt: skip
    assert record is not None and record.status is ItemStatus.SUCCEEDED
    assert record.extra["reason"].startswith("sent by an earlier run")
    fresh = _store()
    again = deliver(
        ITEM, api=_api(handler), store=fresh, sender=_one_attempt(), hand_back=_no_hand_back,
        park=_no_park,
    )  # fmt: skip
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


# --- a cancel or a pause while an item waits -----------------------------------------------

WAIT = 0.15  # longer than the check interval (0.1 s): the state is read again after it


class _Recorder:
    """A transport that answers from a script and notes every request."""

    def __init__(self, *answers: httpx.Response, during: Callable[[str], None] | None = None):
        self.seen: list[str] = []
        self._answers = list(answers)
        self._during = during

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.method)
        if self._during is not None:
            self._during(request.method)
        return self._answers.pop(0) if self._answers else httpx.Response(200, json={})


def _slow_limiter(sender: RetryingSender, during: Callable[[], None]) -> RetryingSender:
    """The limiter makes every request wait `WAIT` seconds; `during` runs as it starts."""
    acquire = sender.limiter.acquire

    def slow(budget: float | None = None) -> object:
        during()
        time.sleep(WAIT)
        return acquire(budget=budget)

    sender.limiter.acquire = slow  # type: ignore[assignment,method-assign]
    return sender


class _Parked:
    def __init__(self) -> None:
        self.items: list[tuple[WorkItem, Attempts]] = []

    def __call__(self, item: WorkItem, attempts: Attempts) -> None:
        self.items.append((item, attempts))


def _gated(
    store: MemoryReportStore, api: VapiApi, sender: RetryingSender, park: _Parked | None = None
) -> ItemRecord | None:
    return deliver(
        ITEM, api=api, store=store, sender=sender, hand_back=_no_hand_back,
        park=park or _no_park, owner="run-1",
    )  # fmt: skip


def test_an_item_whose_batch_is_cancelled_while_it_waits_is_recorded_cancelled() -> None:
    store = _store()
    transport = _Recorder()
    sender = _slow_limiter(_one_attempt(), lambda: store.cancel("b"))

    record = _gated(store, _api(transport), sender)

    assert transport.seen == []  # not even the read
    assert record is not None and record.status is ItemStatus.CANCELLED
    assert (record.attempts, record.sent) == (0, None)
    status = store.status("b")
    assert status is not None and status.state is BatchState.CANCELLED
    assert (status.counts.cancelled, status.counts.pending) == (1, 0)  # counted once


def test_a_cancel_during_the_read_stops_the_update() -> None:
    store = _store()

    def slow_read(method: str) -> None:
        store.cancel("b")
        time.sleep(WAIT)

    transport = _Recorder(httpx.Response(200, json={"id": "num/1"}), during=slow_read)

    record = _gated(store, _api(transport), _one_attempt())

    assert transport.seen == ["GET"]  # the PATCH never went
    assert record is not None and record.status is ItemStatus.CANCELLED and record.attempts == 0
    status = store.status("b")
    assert status is not None and (status.counts.cancelled, status.counts.pending) == (1, 0)


def test_a_cancel_during_a_backoff_records_the_attempts_so_far() -> None:
    store = _store(read_first=False)

    def backoff(seconds: float) -> None:
        store.cancel("b")
        time.sleep(WAIT)

    sender = _sender(RetryPolicy(max_attempts=3, base=0.01), sleep=backoff)
    transport = _Recorder(httpx.Response(503, json={"message": "busy"}))

    record = _gated(store, _api(transport), sender)

    assert transport.seen == ["PATCH"]
    assert record is not None and record.status is ItemStatus.CANCELLED
    assert record.attempts == 1  # the one update that was tried
    assert record.sent == {"provider": "twilio", "assistantId": "asst_1", "twilioAuthToken": "***"}
    assert "tok" not in store.bodies("b", [0])[0]  # it has an outcome: no secret kept


def test_an_item_whose_batch_is_paused_while_it_waits_is_parked_and_given_back() -> None:
    store = _store()
    transport, parked = _Recorder(), _Parked()
    sender = _slow_limiter(_one_attempt(), lambda: store.pause("b"))

    assert _gated(store, _api(transport), sender, parked) is None

    assert transport.seen == []
    assert [(item, attempts.total) for item, attempts in parked.items] == [(ITEM, 0)]
    item = store.item("b", 0)
    assert item is not None and item.status is ItemStatus.PENDING
    store.continue_batch("b", "q")
    assert store.claim("b", 0, 60, "another-run").claim is Claim.CLAIMED  # the claim was let go


def test_a_pause_during_the_reads_backoff_parks_it_with_the_read_counted_as_a_read() -> None:
    store = _store()

    def backoff(seconds: float) -> None:
        store.pause("b")
        time.sleep(WAIT)

    sender = _sender(RetryPolicy(max_attempts=3, base=0.01), sleep=backoff)
    transport, parked = _Recorder(httpx.Response(503, json={"message": "busy"})), _Parked()

    assert _gated(store, _api(transport), sender, parked) is None

    assert transport.seen == ["GET"]
    [(_, attempts)] = parked.items
    assert attempts.as_dict() == {"total": 1, "failures": 1, "rate_limited": 0, "reads": 1}
    assert attempts.updates == 0


def test_a_claim_in_a_paused_batch_parks_the_task_and_claims_nothing() -> None:
    store = _store()
    store.pause("b")
    transport, parked = _Recorder(), _Parked()

    assert _gated(store, _api(transport), _one_attempt(), parked) is None

    assert transport.seen == [] and [item for item, _ in parked.items] == [ITEM]
    store.continue_batch("b", "q")
    assert store.claim("b", 0, 60, "another-run").claim is Claim.CLAIMED


def test_a_request_right_after_its_claim_reads_no_state() -> None:
    class Counting(MemoryReportStore):
        reads = 0

        def state_of(self, batch_id: str) -> BatchState | None:
            self.reads += 1
            return super().state_of(batch_id)

    store = Counting()
    store.create_batch(NewBatch("b", "t", "cli", total=1), [ItemSeed(0, 2, "num/1")])
    transport = _Recorder(httpx.Response(200, json={"id": "num/1"}))

    record = _gated(store, _api(transport), _one_attempt())

    assert record is not None and record.status is ItemStatus.SUCCEEDED
    assert transport.seen == ["GET", "PATCH"] and store.reads == 0
    slow = Counting()
    slow.create_batch(NewBatch("b", "t", "cli", total=1), [ItemSeed(0, 2, "num/1")])
    waited = _gated(slow, _api(_Recorder()), _slow_limiter(_one_attempt(), lambda: None))
    assert waited is not None and waited.status is ItemStatus.SUCCEEDED
    assert slow.reads == 2  # a wait before each request: one read each
