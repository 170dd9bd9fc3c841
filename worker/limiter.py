"""One pace for every worker on every host: GCRA with a shared pause and AIMD.

The algorithm is here, as pure functions over `LimiterState`; a backend keeps the state
and runs a step atomically: `MemoryLimiterBackend` below (one process, for tests) and
`worker.limiter_redis.RedisLimiterBackend` (a Lua script on the Redis server's clock, for
every worker together). `tests/test_limiter_contract.py` runs the same tests on both.

- GCRA: each request reserves the next slot `1 / rate` after the previous one, so no
  burst goes over the limit. A slot further ahead than `max_wait` is not reserved.
- Pause: a 429 pauses every worker until its Retry-After.
- AIMD: a 429 cuts the rate once per pause (x `decrease`), then the rate climbs back by
  `limit / recovery_seconds` each second, so a limit set too high converges on what the
  API accepts instead of storming it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

FLOOR = 0.05  # the rate never falls below 5% of the limit


@dataclass(frozen=True, slots=True)
class Pace:
    limit: float  # requests per second for everyone together; 0 = no limit
    decrease: float = 0.7
    recovery_seconds: float = 60.0

    @property
    def limited(self) -> bool:
        return self.limit > 0


@dataclass(frozen=True, slots=True)
class LimiterState:
    tat: float = 0.0  # when the next slot is free (GCRA's theoretical arrival time)
    rate: float = 0.0  # the current rate; 0 until a 429 first lowers it
    rate_at: float = 0.0  # when `rate` was set
    pause_until: float = 0.0


def current_rate(state: LimiterState, now: float, pace: Pace) -> float:
    if not state.rate:
        return pace.limit
    climbed = state.rate + pace.limit / pace.recovery_seconds * max(0.0, now - state.rate_at)
    return min(pace.limit, climbed)


def reserve(
    state: LimiterState, now: float, pace: Pace, max_wait: float
) -> tuple[LimiterState, float]:
    """Take the next slot: (new state, seconds until it). A negative wait means nothing
    was reserved: the pause or the slot is that many seconds away, more than `max_wait`
    for a slot."""
    if now < state.pause_until:
        return state, -(state.pause_until - now)
    if not pace.limited:
        return state, 0.0
    rate = current_rate(state, now, pace)
    start = max(state.tat, now)
    wait = start - now
    if wait > max_wait:
        return state, -wait
    rate_fields = {"rate": rate, "rate_at": now} if state.rate else {}
    return replace(state, tat=start + 1.0 / rate, **rate_fields), wait


def rate_limited(state: LimiterState, now: float, pace: Pace, pause: float) -> LimiterState:
    """A 429 came back: pause everyone, and cut the rate once per pause."""
    until = now + pause
    if now < state.pause_until:
        return replace(state, pause_until=max(state.pause_until, until))
    if not pace.limited:
        return replace(state, pause_until=until)
    rate = max(pace.limit * FLOOR, current_rate(state, now, pace) * pace.decrease)
    return LimiterState(tat=max(state.tat, until), rate=rate, rate_at=until, pause_until=until)


class LimiterBackend(Protocol):
    def reserve(self, max_wait: float) -> float: ...

    def paused_for(self) -> float:
        """Seconds left of a pause, 0 if none."""
        ...

    def rate_limited(self, pause: float) -> None: ...

    def rate(self) -> float:
        """The rate in force now (requests per second; 0 means no limit)."""
        ...


class MemoryLimiterBackend:
    """The algorithm over state in this process; `clock` is injectable for tests."""

    def __init__(self, pace: Pace, clock: Callable[[], float] = time.monotonic) -> None:
        self._pace = pace
        self._clock = clock
        self._state = LimiterState()
        self._lock = threading.Lock()

    def reserve(self, max_wait: float) -> float:
        with self._lock:
            self._state, wait = reserve(self._state, self._clock(), self._pace, max_wait)
            return wait

    def paused_for(self) -> float:
        with self._lock:
            return max(0.0, self._state.pause_until - self._clock())

    def rate_limited(self, pause: float) -> None:
        with self._lock:
            self._state = rate_limited(self._state, self._clock(), self._pace, pause)

    def rate(self) -> float:
        with self._lock:
            return current_rate(self._state, self._clock(), self._pace)


class Throttled(Exception):
    """No slot within the wait a worker may hold: come back in `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"throttled for {delay:.1f} s")
        self.delay = delay


class Limiter:
    """What a worker calls before each request.

    A worker thread may wait for its slot up to `horizon` seconds (that is the pace, and
    prefetch is one task per thread), but sits out a pause only up to `max_pause`: a
    longer pause hands the item back to the queue (`Throttled`).
    """

    def __init__(
        self,
        backend: LimiterBackend,
        *,
        max_pause: float,
        horizon: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self._max_pause = max_pause
        self._horizon = max(horizon, max_pause)
        self._sleep = sleep

    def acquire(self, budget: float | None = None) -> float:
        """Wait for a slot, at most `budget` seconds in all; returns the seconds waited,
        or raises `Throttled`."""
        waited = 0.0
        while True:
            left = float("inf") if budget is None else max(0.0, budget - waited)
            wait = self.backend.reserve(min(self._horizon, left))
            if wait < 0 and -wait > min(self._max_pause, left):
                raise Throttled(-wait)
            if wait == 0:
                return waited  # nothing slept, so no pause can have begun meanwhile
            if wait:
                self._sleep(abs(wait))
                waited += abs(wait)
            # A pause set while we slept voids our slot: everybody waits it out.
            if wait >= 0 and self.backend.paused_for() <= 0:
                return waited
