"""The limiter's state in Redis: every worker on every host shares one pace.

Each step is one Lua script, so it is atomic, and it reads the Redis server's clock, so
hosts with skewed clocks still agree. The scripts mirror `worker.limiter`'s pure
functions line by line and take its constants as arguments (one source for both);
`tests/test_limiter_contract.py` holds both to the same tests.

Keys, per API and key (`jobs.store.pace.limiter_key`): the state hash, and beside it the
rate learned there, kept a week for the next batch (`learned_key`, "rate|at"). Front ends
read both through `jobs.store.pace`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from jobs.store.pace import IN_FLIGHT_KEY, learned_key
from worker import limiter as algo
from worker.limiter import Pace, Slot, Throttled, View

REMEMBER_SECONDS = 7 * 86_400  # a learned rate is forgotten after a week unused


# ARGV of every script: 1 ceiling (0: none), 2 unlimited (1/0), 3 start, 4 growth,
# 5 probe, 6 margin, 7 floor; then the script's own.
_CONSTANTS = (
    f"local BUCKET, RING, WINDOW = {algo.BUCKET!r}, {algo.RING}, {algo.WINDOW!r}\n"
    f"local TRUST, HALF, COLD = {algo.TRUST_SECONDS!r}, {algo.HALF_LIFE_SECONDS!r}, "
    f"{algo.COLD_SHARE!r}\n"
    f"local SETTLE, SPAN, QUICK = {algo.SETTLE!r}, {algo.STRIKE_SPAN!r}, {algo.QUICK_REJECTS}\n"
    f"local CUT, HOLD_SS, STREAK = {algo.HOLD_CUT!r}, {algo.HOLD_SSTHRESH!r}, "
    f"{algo.STREAK_CUT!r}\n"
    f"local MEASURE, SAMPLE, MIN_MEASURE = {algo.MEASURE!r}, {algo.SAMPLE}, "
    f"{algo.MIN_MEASURE!r}\n"
    f"local MAX_CUT, REMEMBER = {algo.MAX_CUT!r}, {REMEMBER_SECONDS}\n"
)
_PRELUDE = _CONSTANTS + (
    """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ceiling, unlimited = tonumber(ARGV[1]), ARGV[2] == '1'
local start_rate, growth, probe = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local margin, floor_rate = tonumber(ARGV[6]), tonumber(ARGV[7])
local s = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'rate_at', 'ssthresh', 'pause_until',
                     'epoch', 'learned_at', 'strikes', 'quick', 'started', 'saved_at')
local tat, rate, rate_at = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local ssthresh = tonumber(s[4]) or 0  -- 0: none (Python's inf: slow start until a lesson)
local pause_until, epoch = tonumber(s[5]) or 0, tonumber(s[6]) or 0
local learned_at, strikes = tonumber(s[7]) or -1e18, tonumber(s[8]) or 0
local quick, started, saved_at = tonumber(s[9]) or 0, tonumber(s[10]) or 0, tonumber(s[11]) or 0
local function num(x) return string.format('%.17g', x) end
local function clamp(r)
  local top = math.huge
  if ceiling > 0 then top = ceiling end
  return math.min(top, math.max(floor_rate, r))
end
local function slow_start() return ssthresh <= 0 or rate < ssthresh end
local function bucket_of(t) return math.floor(t / BUCKET) end
local function count_of(b)
  local v = redis.call('HGET', KEYS[1], 'b' .. (b % RING))
  if not v then return 0 end
  local id, n = string.match(v, '^(-?%d+):(%d+)$')
  if tonumber(id) ~= b then return 0 end
  return tonumber(n)
end
local function set_count(b, n)
  redis.call('HSET', KEYS[1], 'b' .. (b % RING), b .. ':' .. math.max(0, n))
end
local function void_ahead()  -- _past: slots still ahead are void once the epoch moves
  for b = bucket_of(now) + 1, bucket_of(tat) do
    if count_of(b) > 0 then set_count(b, 0) end
  end
end
local function remember(value)
  redis.call('SET', KEYS[2], num(value) .. '|' .. num(now), 'EX', REMEMBER)
  saved_at = now
end
local function save()
  redis.call('HSET', KEYS[1], 'tat', num(tat), 'rate', num(rate), 'rate_at', num(rate_at),
             'ssthresh', num(ssthresh), 'pause_until', num(pause_until), 'epoch', epoch,
             'learned_at', num(learned_at), 'strikes', strikes, 'quick', quick,
             'started', num(started), 'saved_at', num(saved_at))
  redis.call('EXPIRE', KEYS[1], 3600 + math.ceil(math.max(0, pause_until - now)))
end
"""
)

# KEYS: 1 state hash, 2 learned rate. ARGV: the prelude's, 8 max wait (s).
# Returns {wait, epoch, slot time}: wait >= 0 a slot is reserved that far ahead (at `slot
# time` on the server's clock); < 0 nothing is (a pause, or the slot is further away).
RESERVE = _PRELUDE + (
    """
if now < pause_until then return {num(now - pause_until), epoch, '0'} end
if unlimited then return {'0', epoch, '0'} end
if rate <= 0 then  -- start_state: only the rate's fields
  local mrate, mat = nil, nil
  local mem = redis.call('GET', KEYS[2])
  if mem then
    local r, a = string.match(mem, '^([^|]+)|(.*)$')
    mrate, mat = tonumber(r), tonumber(a)
  end
  if mrate and mrate > 0 then
    local age = math.max(0, now - mat)
    local from = mrate
    if age > TRUST then from = mrate * 0.5 ^ ((age - TRUST) / HALF) end
    ssthresh = clamp(mrate)
    rate = math.min(ssthresh, clamp(math.max(start_rate, from)))
  else
    if ceiling > 0 then rate = clamp(ceiling * COLD) else rate = clamp(start_rate) end
    ssthresh = 0
  end
  rate_at = now
end
local idle = tat < now - WINDOW
local elapsed = math.max(0, now - rate_at)  -- advance
if tat > now and elapsed > 0 then
  if slow_start() then
    local grown = rate * growth ^ elapsed
    if ssthresh > 0 then grown = math.min(ssthresh, grown) end
    rate = clamp(grown)
  else
    rate = clamp(rate * (1 + probe * elapsed))
  end
end
rate_at = now
local slot = math.max(tat, now)
local wait = slot - now
if wait > tonumber(ARGV[8]) then
  save()
  return {num(-wait), epoch, '0'}
end
local spaced = rate  -- rate_at_slot
if slow_start() then
  spaced = clamp(rate * growth ^ wait)
  if ssthresh > 0 then spaced = math.min(ssthresh, spaced) end
end
tat = slot + 1 / spaced
local b = bucket_of(slot)
set_count(b, count_of(b) + 1)
if idle or started == 0 then started = slot end
if not slow_start() and now - saved_at >= 5 then remember(rate) end  -- probing above
save()
return {num(wait), epoch, num(slot)}
"""
)

# KEYS: 1 state hash, 2 learned rate. ARGV: the prelude's, 8 pause (s), 9 the slot's
# epoch ('' if unknown), 10 the slot's time ('0' if unknown). A 429 came back: learn.
RATE_LIMITED = _PRELUDE + (
    """
local slot_at = tonumber(ARGV[10])
if slot_at > 0 then
  local b = bucket_of(slot_at)
  local n = count_of(b)
  if n > 0 then set_count(b, n - 1) end
end
local hold_to = now + tonumber(ARGV[8])
local function hold()
  void_ahead()
  pause_until = math.max(pause_until, hold_to)
  tat, started = hold_to, hold_to
  ssthresh = clamp(rate * HOLD_SS)
  rate = clamp(rate * CUT)
  rate_at, epoch, learned_at = hold_to, epoch + 1, hold_to
  strikes, quick = 0, 0
  remember(ssthresh)
end
if unlimited or rate <= 0 then
  pause_until = math.max(pause_until, hold_to)
  save()
  return 'paused'
end
if ARGV[9] ~= '' and tonumber(ARGV[9]) ~= epoch then
  save()
  return 'stale'
end
if now - learned_at < SETTLE then
  if quick + 1 >= QUICK then hold() else quick = quick + 1 end
  save()
  return 'settling'
end
-- accepted_rate: nil when the measure would be too short to trust
local span = MEASURE
if slow_start() then span = 1.0 end
span = math.min(span, math.max(MIN_MEASURE, SAMPLE / rate))
local last = bucket_of(now)
local stop = last * BUCKET
local since = math.max(stop - span, started)
local measured = nil
if stop - since >= MIN_MEASURE then
  local first = bucket_of(since)
  local begin = first * BUCKET
  if since > begin then begin = since end
  local counted = 0
  for b = first, last - 1 do counted = counted + count_of(b) end
  measured = counted / (stop - begin)
end
-- drained_at: the oldest requests of the last WINDOW must leave it first
local accepted = measured or rate
local excess = -math.max(0, math.floor(accepted) - 1)
local oldest = bucket_of(now - WINDOW)
for b = oldest, last do
  if (b + 1) * BUCKET > now - WINDOW then excess = excess + count_of(b) end
end
local drained = now
for b = oldest, last do
  if excess <= 0 then break end
  if (b + 1) * BUCKET > now - WINDOW then
    excess = excess - count_of(b)
    if excess <= 0 then drained = math.min(now + WINDOW, (b + 1) * BUCKET + WINDOW) end
  end
end
void_ahead()
if now - learned_at < SPAN then strikes = strikes + 1 else strikes = 1 end
local top = rate * margin
if strikes > 1 then top = rate * STREAK end
local taught = top
if measured then taught = math.min(top, measured * margin) end
rate = clamp(math.max(taught, rate * MAX_CUT))
rate_at, ssthresh, epoch, learned_at, quick = now, rate, epoch + 1, now, 0
tat, started = drained, drained
remember(rate)
save()
return 'learned'
"""
)

# KEYS: 1 state hash, 2 learned rate. ARGV: the prelude's. Returns {pause left, rate, epoch}.
VIEW = (
    _PRELUDE
    + """
return {num(math.max(0, pause_until - now)), num(rate), epoch}
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


def _pace_args(pace: Pace) -> list[float | int]:
    return [
        pace.ceiling, int(pace.unlimited), pace.start, pace.growth, pace.probe, pace.margin,
        pace.floor,
    ]  # fmt: skip


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisLimiterBackend:
    """With a pace, every request reserves its slot in Redis. Unlimited, there is no
    slot to reserve, only the shared pause after a 429 to respect: a worker that found
    no pause trusts that for `pause_check_interval` seconds instead of asking before
    every request (its own 429 is seen at once; another worker's within the interval)."""

    def __init__(
        self,
        client: redis.Redis,
        pace: Pace,
        key: str,
        *,
        pause_check_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pace = pace
        self._keys = [key, learned_key(key)]
        self._args = _pace_args(pace)
        self._reserve = client.register_script(RESERVE)
        self._rate_limited = client.register_script(RATE_LIMITED)
        self._view = client.register_script(VIEW)
        self._check_interval = pause_check_interval
        self._clock = clock
        self._no_pause_until = float("-inf")
        self._pauses = 0  # 429s this process has seen
        self._lock = threading.Lock()

    def reserve(self, max_wait: float) -> Slot:
        unlimited = self._pace.unlimited
        if unlimited and self._clock() < self._no_pause_until:
            return Slot(0.0)
        seen = self._pauses
        wait, epoch, at = self._reserve(keys=self._keys, args=[*self._args, max_wait])
        slot = Slot(float(_text(wait)), int(epoch), float(_text(at)))
        if unlimited and slot.wait == 0:
            with self._lock:
                # A pause another thread of ours set meanwhile makes this answer stale.
                if seen == self._pauses:
                    self._no_pause_until = self._clock() + self._check_interval
        return slot

    def rate_limited(self, pause: float, slot: Slot | None = None) -> None:
        epoch = "" if slot is None else str(slot.epoch)
        at = "0" if slot is None else repr(slot.at)
        self._rate_limited(keys=self._keys, args=[*self._args, pause, epoch, at])
        # Only now that Redis holds the pause: an answer read before it is stale.
        with self._lock:
            self._pauses += 1
            self._no_pause_until = float("-inf")

    def view(self) -> View:
        pause_left, rate, epoch = self._view(keys=self._keys, args=self._args)
        return View(float(_text(pause_left)), float(_text(rate)), int(epoch))


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
