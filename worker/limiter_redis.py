"""The limiter's state in Redis: every worker on every host shares one pace.

Each step is one Lua script, so it is atomic, and it reads the Redis server's clock, so
hosts with skewed clocks still agree. The scripts mirror `worker.limiter`'s pure
functions line by line; `tests/test_limiter_contract.py` holds both to the same tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from worker.limiter import FLOOR, Pace, Throttled

LIMITER_KEY = "phonebatch:limiter"
IN_FLIGHT_KEY = "phonebatch:in-flight"

_READ_STATE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'rate_at', 'pause_until')
local tat = tonumber(s[1]) or 0
local rate = tonumber(s[2]) or 0
local rate_at = tonumber(s[3]) or 0
local pause_until = tonumber(s[4]) or 0
local limit = tonumber(ARGV[1])
local recovery = tonumber(ARGV[2])
local current = limit
if rate > 0 then
  current = math.min(limit, rate + limit / recovery * math.max(0, now - rate_at))
end
local function num(x) return string.format('%.17g', x) end
"""

# The scripts below expire the state after an hour idle (past any pause): a fresh
# limiter starts at the limit.

# KEYS: 1 limiter hash
# ARGV: 1 limit (requests/s, 0 = none), 2 recovery seconds, 3 max wait (s)
# Returns the wait in seconds, as text: >= 0 a slot is reserved that far ahead;
# < 0 nothing is reserved (a pause, or the next slot is further than the max wait).
RESERVE = (
    _READ_STATE
    + """
if now < pause_until then return num(now - pause_until) end
if limit <= 0 then return '0' end
local start = math.max(tat, now)
local wait = start - now
if wait > tonumber(ARGV[3]) then return num(-wait) end
redis.call('HSET', KEYS[1], 'tat', num(start + 1 / current))
if rate > 0 then redis.call('HSET', KEYS[1], 'rate', num(current), 'rate_at', num(now)) end
redis.call('EXPIRE', KEYS[1], 3600)
return num(wait)
"""
)

# KEYS: 1 limiter hash
# ARGV: 1 limit, 2 recovery seconds, 3 decrease factor, 4 pause (s), 5 floor fraction
RATE_LIMITED = (
    _READ_STATE
    + """
local pause_to = now + tonumber(ARGV[4])
if now < pause_until then
  redis.call('HSET', KEYS[1], 'pause_until', num(math.max(pause_until, pause_to)))
elseif limit <= 0 then
  redis.call('HSET', KEYS[1], 'pause_until', num(pause_to))
else
  local lowered = math.max(limit * tonumber(ARGV[5]), current * tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'tat', num(math.max(tat, pause_to)), 'rate', num(lowered),
             'rate_at', num(pause_to), 'pause_until', num(pause_to))
end
redis.call('EXPIRE', KEYS[1], math.ceil(3600 + tonumber(ARGV[4])))
return 1
"""
)

# KEYS: 1 limiter hash. ARGV: 1 limit, 2 recovery seconds. Returns {pause left, rate}.
STATE = (
    _READ_STATE
    + """
return {num(math.max(0, pause_until - now)), num(current)}
"""
)

# KEYS: 1 in-flight sorted set (token -> lease expiry)
# ARGV: 1 cap, 2 lease seconds, 3 token. Returns 1 when a place was taken, else 0.
# Leases expire so a worker killed mid-request does not hold its place forever.
TAKE_PLACE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
return 1
"""


class RedisLimiterBackend:
    """With a limit, every request reserves its slot in Redis. Without one there is no
    slot to reserve, only the shared pause after a 429 to respect: a worker that found
    no pause trusts that for `pause_check_interval` seconds instead of asking before
    every request (its own 429 is seen at once; another worker's within the interval)."""

    def __init__(
        self,
        client: redis.Redis,
        pace: Pace,
        key: str = LIMITER_KEY,
        *,
        pause_check_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pace = pace
        self._keys = [key]
        self._reserve = client.register_script(RESERVE)
        self._rate_limited = client.register_script(RATE_LIMITED)
        self._state = client.register_script(STATE)
        self._check_interval = pause_check_interval
        self._clock = clock
        self._no_pause_until = float("-inf")
        self._pauses = 0  # 429s this process has seen
        self._lock = threading.Lock()

    def _args(self) -> list[float]:
        return [self._pace.limit, self._pace.recovery_seconds]

    def reserve(self, max_wait: float) -> float:
        if not self._pace.limited and self._clock() < self._no_pause_until:
            return 0.0
        seen = self._pauses
        wait = float(self._reserve(keys=self._keys, args=[*self._args(), max_wait]))
        if not self._pace.limited and wait == 0:
            with self._lock:
                # A pause another thread of ours set meanwhile makes this answer stale.
                if seen == self._pauses:
                    self._no_pause_until = self._clock() + self._check_interval
        return wait

    def paused_for(self) -> float:
        return float(self._state(keys=self._keys, args=self._args())[0])

    def rate_limited(self, pause: float) -> None:
        args = [*self._args(), self._pace.decrease, pause, FLOOR]
        self._rate_limited(keys=self._keys, args=args)
        # Only now that Redis holds the pause: an answer read before it is stale.
        with self._lock:
            self._pauses += 1
            self._no_pause_until = float("-inf")

    def rate(self) -> float:
        return float(self._state(keys=self._keys, args=self._args())[1])


class RedisInFlightCap:
    """At most `cap` requests in flight across all workers."""

    def __init__(
        self, client: redis.Redis, cap: int, *, lease: float, key: str = IN_FLIGHT_KEY
    ) -> None:
        self._client = client
        self._cap = cap
        self._lease = lease
        self._key = key
        self._take = client.register_script(TAKE_PLACE)

    def try_take(self) -> str | None:
        token = uuid.uuid4().hex
        taken = self._take(keys=[self._key], args=[self._cap, self._lease, token])
        return token if taken == 1 else None

    def give_back(self, token: str) -> None:
        self._client.zrem(self._key, token)

    @contextmanager
    def hold(self, max_wait: float, poll: float = 0.01) -> Iterator[None]:
        """A place for one request, waited for at most `max_wait` seconds."""
        deadline = time.monotonic() + max_wait
        token = self.try_take()
        while token is None:
            if time.monotonic() >= deadline:
                raise Throttled(1.0)
            time.sleep(poll)
            token = self.try_take()
        try:
            yield
        finally:
            self.give_back(token)
