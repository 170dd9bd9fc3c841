"""The simulator's own rate limit, counted the ways real APIs count.

Servers disagree on what "10 requests a second" means: a sliding window, fixed windows
on the clock, a token bucket that saves up a second's worth, or one that saves up
nothing. The client's rate learner must cope with each, so the simulator offers all of
them. Each kind is a small pure class behind one method, `take(now) -> float`: 0 if the
request is accepted (and counted), else the seconds until one would be. Nothing here
reads a clock: `now` is passed in (the simulator passes `time.monotonic()`), so tests
drive them with made-up times and no sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

SLIDING, FIXED, BUCKET_BURST, BUCKET = "sliding", "fixed", "bucket-burst", "bucket"
RATE_LIMIT_MODES = (SLIDING, FIXED, BUCKET_BURST, BUCKET)
WINDOW = 1.0  # seconds: sliding and fixed windows count per second, as `rate` is per second


class RateLimiter(Protocol):
    """One way of counting the simulator's rate limit (`make_limiter` picks it by mode)."""

    def take(self, now: float) -> float:
        """0 if a request arriving at `now` is accepted, else seconds until one would be."""
        ...


def window_count(rate: float) -> int:
    """Requests a window accepts: a count must be whole, so 10.0 is 10 and 2.5 is 2; at
    least 1, so a rate below 1/s still lets one request a second through."""
    return max(1, math.floor(rate))


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; it starts full."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.at: float | None = None

    def take(self, now: float) -> float:
        """0 if a token was taken, else seconds until one is free."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class SlidingWindow:
    """At most `window_count(rate)` accepted in any window (now - 1 s, now].

    Only accepted requests count: a client that keeps knocking while refused is not
    locked out for longer, which is how a strict sliding log on a real server behaves
    when it records what it served.
    """

    def __init__(self, rate: float) -> None:
        self.limit = window_count(rate)
        self._accepted: deque[float] = deque()  # arrival times, oldest first

    def take(self, now: float) -> float:
        """Accept if fewer than `limit` were accepted in the last second, else wait for
        the oldest of them to leave the window."""
        while self._accepted and self._accepted[0] <= now - WINDOW:
            self._accepted.popleft()
        if len(self._accepted) < self.limit:
            self._accepted.append(now)
            return 0.0
        return self._accepted[0] + WINDOW - now


class FixedWindow:
    """At most `window_count(rate)` accepted per window [n, n + 1 s), n a whole second.

    The windows are aligned to whole seconds of the clock `take` is given; the simulator
    gives it the monotonic clock, so their phase against wall time is arbitrary, as a
    real server's windows are to a client. A client that paces evenly can still see up
    to twice the limit in one second straddling a boundary: that is the point of this kind.
    """

    def __init__(self, rate: float) -> None:
        self.limit = window_count(rate)
        self._window: int | None = None
        self._count = 0

    def take(self, now: float) -> float:
        """Accept while this window has room, else wait for the next window to begin."""
        window = math.floor(now / WINDOW)
        if window != self._window:
            self._window, self._count = window, 0
        if self._count < self.limit:
            self._count += 1
            return 0.0
        return (window + 1) * WINDOW - now


def make_limiter(mode: str, rate: float, burst: float) -> RateLimiter:
    """The limiter for a `FaultConfig.rate_limit_mode`; `burst` matters only for "bucket"
    ("bucket-burst" always saves up one second's worth, `rate` tokens)."""
    if mode == SLIDING:
        return SlidingWindow(rate)
    if mode == FIXED:
        return FixedWindow(rate)
    if mode == BUCKET_BURST:
        return TokenBucket(rate, rate)
    if mode == BUCKET:
        return TokenBucket(rate, burst)
    raise ValueError(f"rate_limit_mode must be one of {', '.join(RATE_LIMIT_MODES)}: {mode!r}")
