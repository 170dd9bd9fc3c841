"""The retry policy, with scripted answers and no sleeping: waits are recorded, not slept."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from config import Settings
from worker.errors import RateLimited, RejectedError, ServerError, parse_retry_after
from worker.limiter import Limiter, MemoryLimiterBackend, Pace
from worker.retry import Attempts, Deferred, RetryingSender, RetryPolicy
from worker.vapi import VapiApi, build_api


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _api(answers: Iterator[httpx.Response]) -> VapiApi:
    settings = Settings(_env_file=None, vapi_api_key="k", vapi_base_url="http://vapi.test")  # type: ignore[call-arg]
    transport = httpx.MockTransport(lambda request: next(answers))
    return build_api(settings, transport=transport)


def _sender(clock: Clock, policy: RetryPolicy, limit: float = 0) -> RetryingSender:
    pace = Pace(unlimited=True) if not limit else Pace(ceiling=2 * limit, growth=1.0)
    backend = MemoryLimiterBackend(pace, clock=clock)
    limiter = Limiter(backend, max_pause=policy.inline_limit, sleep=clock.sleep)
    return RetryingSender(policy, limiter, sleep=clock.sleep)


def _policy(**overrides: object) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), **overrides)  # type: ignore[arg-type]


def test_the_backoff_is_full_jitter_exponential_with_a_cap() -> None:
    policy = _policy(base=0.5, cap=4.0)
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        waits = [policy.backoff(failures) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.9 and min(waits) < ceiling * 0.1  # spread, not fixed


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 27, 20, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Fri, 27 Nov 2026 20:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 19:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    response = httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow"})
    api = _api(iter([response]))
    with pytest.raises(RateLimited) as caught:
        api.update_phone_number("n", "{}")
    assert caught.value.retry_after == 3.0


def test_429_then_503_then_200_obeys_retry_after_and_counts_attempts() -> None:
    clock = Clock()
    answers = iter([
        httpx.Response(429, headers={"Retry-After": "2"}, json={"message": "slow down"}),
        httpx.Response(503, json={"message": "busy"}),
        httpx.Response(200, json={"id": "n"}),
    ])  # fmt: skip
    sender = _sender(clock, _policy())
    result, attempts = sender.run(lambda: _api(answers).update_phone_number("n", "{}"), Attempts())
    assert result.http_status == 200
    assert attempts == Attempts(total=3, failures=1, rate_limited=1)
    assert clock.slept[0] == 2.0  # the request that got the 429 waits its Retry-After
    assert 0 <= clock.slept[1] <= 0.5  # backoff after the first 503
    assert len(clock.slept) == 2  # the limiter's own pause had passed meanwhile


def test_permanent_errors_take_one_attempt() -> None:
    clock = Clock()
    answers = iter([httpx.Response(404, json={"message": "Phone number not found"})])
    sender = _sender(clock, _policy())
    with pytest.raises(RejectedError) as caught:
        sender.run(lambda: _api(answers).update_phone_number("n", "{}"), Attempts())
    assert (caught.value.attempts, caught.value.http_status) == (1, 404)
    assert clock.slept == []


def test_transient_errors_stop_at_the_attempt_limit() -> None:
    clock = Clock()
    answers = iter([httpx.Response(503, json={"message": "busy"})] * 10)
    sender = _sender(clock, _policy(max_attempts=4, cap=0.1))
    with pytest.raises(ServerError) as caught:
        sender.run(lambda: _api(answers).update_phone_number("n", "{}"), Attempts())
    assert caught.value.attempts == 4
    assert len(clock.slept) == 3


def test_429s_do_not_spend_the_failure_budget() -> None:
    clock = Clock()
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "1"}, json={})] * 5
        + [httpx.Response(500, json={}), httpx.Response(200, json={})]
    )
    sender = _sender(clock, _policy(max_attempts=2, cap=0.1))
    _, attempts = sender.run(lambda: _api(answers).update_phone_number("n", "{}"), Attempts())
    assert attempts == Attempts(total=7, failures=1, rate_limited=5)


def test_a_429_without_retry_after_pauses_for_a_backoff_of_at_least_a_second() -> None:
    policy = _policy()
    error = RateLimited("slow")
    assert all(1.0 <= policy.pause_for(error, n) <= policy.cap for n in range(1, 10))
    assert policy.pause_for(RateLimited("slow", retry_after=4.5), 1) == 4.5


def test_a_long_wait_hands_the_item_back_with_its_counts() -> None:
    clock = Clock()
    answers = iter([httpx.Response(502, json={})] * 10)
    sender = _sender(clock, _policy(base=100.0, cap=100.0, inline_limit=0.001))
    with pytest.raises(Deferred) as caught:
        sender.run(
            lambda: _api(answers).update_phone_number("n", "{}"), Attempts(total=3, failures=2)
        )
    assert caught.value.attempts == Attempts(total=4, failures=3, rate_limited=0)
    assert caught.value.delay > 0.001


def test_a_long_pause_hands_the_item_back_without_an_attempt() -> None:
    clock = Clock()
    sender = _sender(clock, _policy(inline_limit=3.0), limit=10)
    sender.limiter.backend.rate_limited(30.0)
    with pytest.raises(Deferred) as caught:
        sender.run(lambda: pytest.fail("no request during a pause"), Attempts(total=1))
    assert caught.value.attempts == Attempts(total=1)
    assert 29.9 < caught.value.delay <= 30.0


def test_counts_carried_over_a_hand_back_still_limit_attempts() -> None:
    clock = Clock()
    answers = iter([httpx.Response(503, json={})] * 3)
    sender = _sender(clock, _policy(max_attempts=6))
    with pytest.raises(ServerError) as caught:
        sender.run(
            lambda: _api(answers).update_phone_number("n", "{}"), Attempts(total=5, failures=5)
        )
    assert caught.value.attempts == 6


def test_policy_from_settings() -> None:
    settings = Settings(_env_file=None, max_attempts=3, backoff_base=0.2, inline_wait_limit=1.5)  # type: ignore[call-arg]
    policy = RetryPolicy.from_settings(settings)
    assert (policy.max_attempts, policy.base, policy.inline_limit) == (3, 0.2, 1.5)


def test_waits_never_outlast_the_task_budget() -> None:
    clock = Clock()
    backend = MemoryLimiterBackend(Pace(ceiling=2.0, growth=1.0), clock=clock)  # starts at 1/s
    limiter = Limiter(backend, max_pause=3.0, horizon=30.0, sleep=clock.sleep)
    sender = RetryingSender(_policy(budget=2.5), limiter, sleep=clock.sleep, clock=clock)
    for _ in range(3):
        backend.reserve(30.0)  # three slots already taken: the next is 3 s away
    with pytest.raises(Deferred) as caught:
        sender.run(lambda: pytest.fail("over budget"), Attempts())
    assert caught.value.delay == pytest.approx(3.0)
    assert clock.slept == []


def test_an_update_answer_is_not_parsed_a_read_answer_is() -> None:
    number = {"id": "n", "provider": "vapi", "assistantId": "a1"}
    answers = iter([httpx.Response(200, json=number), httpx.Response(200, json=number)])
    api = _api(answers)
    assert api.update_phone_number("n", "{}").payload is None
    assert api.get_phone_number("n").payload == number


def test_a_429_without_retry_after_waits_the_same_pause_it_gives_the_limiter() -> None:
    clock = Clock()
    answers = iter([httpx.Response(429, json={}), httpx.Response(200, json={})])
    sender = _sender(clock, _policy())
    sender.run(lambda: _api(answers).update_phone_number("n", "{}"), Attempts())
    backend = sender.limiter.backend
    assert isinstance(backend, MemoryLimiterBackend)
    assert len(clock.slept) == 1 and clock.slept[0] >= 1.0  # a backoff of at least 1 s
    assert backend.state.pause_until == pytest.approx(1000.0 + clock.slept[0])
