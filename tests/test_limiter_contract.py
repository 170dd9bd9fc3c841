"""The limiter: its algorithm exactly (pure functions, a fake clock), then the same
behaviour from both backends, in memory and in Redis (a Lua script on Redis's clock)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from worker.limiter import (
    FLOOR,
    Limiter,
    LimiterBackend,
    LimiterState,
    MemoryLimiterBackend,
    Pace,
    Throttled,
    current_rate,
    rate_limited,
    reserve,
)
from worker.limiter_redis import RedisInFlightCap, RedisLimiterBackend

PACE = Pace(limit=10.0, decrease=0.5, recovery_seconds=10.0)


def test_slots_are_spaced_one_interval_apart() -> None:
    state, waits = LimiterState(), []
    for _ in range(4):
        state, wait = reserve(state, 100.0, PACE, max_wait=5)
        waits.append(round(wait, 9))
    assert waits == [0.0, 0.1, 0.2, 0.3]


def test_a_slot_beyond_the_max_wait_is_not_reserved() -> None:
    state = LimiterState(tat=103.0)
    after, wait = reserve(state, 100.0, PACE, max_wait=2)
    assert (after, wait) == (state, -3.0)


def test_a_429_pauses_and_cuts_the_rate_once_per_pause() -> None:
    state = rate_limited(LimiterState(), 100.0, PACE, pause=2.0)
    assert (state.pause_until, state.rate, state.tat) == (102.0, 5.0, 102.0)
    again = rate_limited(state, 101.0, PACE, pause=3.0)
    assert (again.pause_until, again.rate) == (104.0, 5.0)  # extended, not cut twice
    _, wait = reserve(again, 103.0, PACE, max_wait=5)
    assert wait == -1.0  # still paused


def test_the_rate_climbs_back_to_the_limit() -> None:
    state = rate_limited(LimiterState(), 100.0, PACE, pause=1.0)  # 5/s from t=101
    assert current_rate(state, 101.0, PACE) == 5.0
    assert current_rate(state, 103.0, PACE) == pytest.approx(7.0)  # +1/s each second
    assert current_rate(state, 200.0, PACE) == 10.0
    floor = LimiterState(rate=PACE.limit * FLOOR, rate_at=0.0)
    assert rate_limited(floor, 0.0, PACE, 1.0).rate == PACE.limit * FLOOR


def test_no_limit_means_no_wait_but_pauses_still_hold() -> None:
    free = Pace(limit=0)
    assert reserve(LimiterState(), 5.0, free, 1)[1] == 0.0
    paused = rate_limited(LimiterState(), 5.0, free, pause=2.0)
    assert reserve(paused, 6.0, free, 1)[1] == -1.0


# --- the same behaviour from both backends ---------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def backend_for(request: pytest.FixtureRequest) -> Iterator[type]:
    def make(pace: Pace) -> LimiterBackend:
        if request.param == "memory":
            return MemoryLimiterBackend(pace)
        client: redis.Redis = request.getfixturevalue("redis_client")
        return RedisLimiterBackend(client, pace, key="phonebatch:limiter:test")

    return make  # type: ignore[misc]


def test_backend_paces_reservations(backend_for) -> None:  # type: ignore[no-untyped-def]
    backend = backend_for(Pace(limit=20.0))
    waits = [backend.reserve(5.0) for _ in range(5)]
    assert waits[0] == pytest.approx(0.0, abs=0.01)
    for before, after in itertools.pairwise(waits):
        assert after - before == pytest.approx(0.05, abs=0.01)
    assert backend.reserve(0.1) < 0  # the next slot is 0.25 s away: not reserved


def test_backend_pause_and_decrease(backend_for) -> None:  # type: ignore[no-untyped-def]
    backend = backend_for(Pace(limit=20.0, decrease=0.5, recovery_seconds=1000))
    backend.rate_limited(0.3)
    assert 0.2 < backend.paused_for() <= 0.3
    assert backend.reserve(5.0) < 0  # nothing reserved during a pause
    backend.rate_limited(0.3)  # the same congestion: no second cut
    time.sleep(0.35)
    assert backend.paused_for() == 0.0
    assert backend.rate() == pytest.approx(10.0, abs=0.1)
    first, second = backend.reserve(5.0), backend.reserve(5.0)
    assert second - first == pytest.approx(0.1, abs=0.01)  # paced at the lowered rate


def test_limiter_waits_out_short_pauses_and_throttles_long_ones(backend_for) -> None:  # type: ignore[no-untyped-def]
    backend = backend_for(Pace(limit=100.0))
    limiter = Limiter(backend, max_pause=0.5)
    backend.rate_limited(0.2)
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started >= 0.15
    backend.rate_limited(5.0)
    with pytest.raises(Throttled) as caught:
        limiter.acquire()
    assert 4.5 < caught.value.delay <= 5.0


def test_backend_shared_by_threads_never_goes_over_the_limit(backend_for) -> None:  # type: ignore[no-untyped-def]
    limiter = Limiter(backend_for(Pace(limit=50.0)), max_pause=1.0)
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 60
    most = max(sum(1 for s in stamps if start <= s < start + 0.5) for start in stamps)
    assert most <= 26  # 50/s over half a second, plus the one at the edge
    assert stamps[-1] - stamps[0] == pytest.approx(59 / 50, abs=0.1)


def test_without_a_limit_a_worker_rechecks_the_pause_at_most_every_interval(
    redis_client: redis.Redis,
) -> None:
    now = [0.0]
    key = "phonebatch:limiter:test-free"
    ours = RedisLimiterBackend(redis_client, Pace(0), key, clock=lambda: now[0])
    other = RedisLimiterBackend(redis_client, Pace(0), key, clock=lambda: now[0])
    assert ours.reserve(1.0) == 0.0
    other.rate_limited(5.0)  # another worker's 429
    assert other.reserve(1.0) < 0  # the worker that saw it holds back at once
    assert ours.reserve(1.0) == 0.0  # ours trusts its last look for the interval...
    now[0] += 0.11
    assert -5.0 <= ours.reserve(1.0) < -4.5  # ...and then sees the pause
    ours.rate_limited(5.0)
    assert ours.reserve(1.0) < 0  # its own 429 at once


def test_a_429_during_a_pause_check_is_not_forgotten(redis_client: redis.Redis) -> None:
    backend = RedisLimiterBackend(redis_client, Pace(0), "phonebatch:limiter:test-race")
    asks = backend._reserve

    def racing(**kwargs: Any) -> Any:
        answer = asks(**kwargs)  # Redis says: no pause...
        backend.rate_limited(5.0)  # ...while another thread of ours gets a 429
        return answer

    backend._reserve = racing  # type: ignore[assignment]
    assert backend.reserve(1.0) == 0.0
    backend._reserve = asks  # type: ignore[assignment]
    assert backend.reserve(1.0) < 0  # the stale "no pause" was not trusted


def test_in_flight_cap_across_clients(redis_client: redis.Redis) -> None:
    caps = [RedisInFlightCap(redis_client, 2, lease=5.0) for _ in range(3)]
    held = [caps[0].try_take(), caps[1].try_take()]
    assert all(held) and caps[2].try_take() is None
    caps[0].give_back(held[0] or "")
    assert caps[2].try_take() is not None
    short = RedisInFlightCap(redis_client, 1, lease=0.1, key="phonebatch:in-flight:short")
    assert short.try_take() is not None and short.try_take() is None
    time.sleep(0.15)
    assert short.try_take() is not None  # a dead holder's lease ran out
