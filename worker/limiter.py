"""One pace for every worker on every host, learned from the API's own 429s.

Vapi publishes no rate limit, and servers count in different ways (sliding or fixed
windows, token buckets with or without a burst). So the pace is learned, as TCP's BBR
learns a path's delivery rate: not cut blindly on each 429, but set from what the API
was measured to accept.

The algorithm is here, as pure functions over `LimiterState`; a backend keeps the state
and runs a step atomically: `MemoryLimiterBackend` below (one process, for tests) and
`worker.limiter_redis.RedisLimiterBackend` (a Lua script on the Redis server's clock, for
every worker together). `tests/test_limiter_contract.py` runs the same tests on both.

- Slots (GCRA): each request reserves the next slot `1 / rate` after the previous one,
  so no burst goes over the rate. Every reserved slot is counted in 100 ms buckets.
- Slow start: with nothing learned, the rate starts at `Pace.start` (or `COLD_SHARE` of
  the ceiling) and grows x`growth` per second while every slot is taken, up to the
  ceiling.
- Learning: a 429 un-counts its request, measures the requests accepted lately (about
  `SAMPLE` requests, over 0.5 s .. `MEASURE`, never across a lesson's drain, a hold or an
  idle gap) and sets the rate to `margin` x that: a lesson within `STRIKE_SPAN` of the
  last cuts at least to `STREAK_CUT`, and none cuts below `MAX_CUT` of the rate (a
  measure too short to trust only cuts to `margin`). Requests already waiting for a
  slot of the old rate re-reserve (the `epoch` moves), and the next slot waits until
  the last second holds fewer requests than were accepted, so a window that is full
  drains first. The request that got the 429 waits its own Retry-After
  (`worker.retry`); the others go on at the learned rate.
- Probing: above the learned rate, the rate grows by `probe` per second while every slot
  is taken, so a limit that rises (or a lesson too cautious) is found again.
- Hold: only when 429s keep coming (`QUICK_REJECTS` 429s at the new pace within `SETTLE`
  of a lesson) does every worker stop until the API's Retry-After has passed; the rate
  is cut by `HOLD_CUT` and climbs back quickly (slow start) to `HOLD_SSTHRESH` of it.
- Unlimited (`Pace.unlimited`): no slots; a 429 pauses every worker for its Retry-After.

What was learned is remembered (`Remembered`) for the next batch on the same API and
key: used as it is for `TRUST_SECONDS`, then halved every further day, but never
started below `Pace.start` (`remembered_start`). The Redis backend remembers each lesson,
each hold and, every few seconds, a rate probed above a lesson, and forgets it all after
a week unused.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

BUCKET = 0.1  # seconds per bucket of counted requests
RING = 400  # buckets kept (40 s): past the furthest slot a worker reserves, plus WINDOW
MAX_HORIZON = 30.0  # no slot is reserved further ahead than this
WINDOW = 1.0  # the window most APIs count in: a lesson drains the last one
MEASURE = 2.0  # the longest span accepted requests are measured over
SAMPLE = 20  # requests a measure should hold: counts are whole numbers
SETTLE = 0.25  # seconds after a lesson before another 429 may teach again
STRIKE_SPAN = 3.0  # lessons this close together count as one streak
QUICK_REJECTS = 2  # 429s within SETTLE of a lesson, at its rate, before every worker holds
HOLD_CUT = 0.7  # a hold multiplies the rate by this...
HOLD_SSTHRESH = 0.8  # ...and it climbs back quickly (slow start) up to this share
STREAK_CUT = 0.85  # a lesson within STRIKE_SPAN of the last cuts the rate at least this much
MAX_CUT = 0.5  # no lesson cuts the rate below this share of it
MIN_MEASURE = 0.5  # seconds: a shorter measure is not trusted
TRUST_SECONDS = 86_400.0  # a remembered rate is used as it is for a day...
HALF_LIFE_SECONDS = 86_400.0  # ...then halves each further day
COLD_SHARE = 0.5  # with a ceiling and nothing learned, start at this share of it


@dataclass(frozen=True, slots=True)
class Pace:
    """How the limiter paces; built once from settings."""

    ceiling: float = 0.0  # requests/s never exceeded, all workers together; 0: none
    unlimited: bool = False  # no pacing at all: only a 429's pause holds workers
    start: float = 10.0  # the first rate with nothing learned and no ceiling
    growth: float = 2.0  # slow start: the rate x this per second while saturated
    probe: float = 0.005  # above what was learned: + this share per second while saturated
    margin: float = 0.95  # pace at this share of the accepted rate measured at a 429
    floor: float = 0.2  # the rate never goes below this (requests/s)

    def __post_init__(self) -> None:
        if self.floor <= 0 or self.start <= 0 or self.growth < 1:
            raise ValueError("a pace needs floor > 0, start > 0 and growth >= 1")

    def clamp(self, rate: float) -> float:
        top = self.ceiling if self.ceiling > 0 else math.inf
        return min(top, max(self.floor, rate))


@dataclass(frozen=True, slots=True)
class Remembered:
    """A rate learned for this API and key, kept so the next batch starts near it."""

    rate: float
    at: float  # when it was learned, on the limiter's clock


@dataclass(frozen=True, slots=True)
class Slot:
    """A reservation. `wait` >= 0: reserved that far ahead (from `acquire`: the seconds
    waited). `wait` < 0: nothing reserved; a pause or the next slot is that far away.
    `epoch` and `at` say which pace it was taken under and when it is, so a 429 for it
    can be told apart from one for a request sent at an older pace."""

    wait: float
    epoch: int = 0
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class LimiterState:
    """Everything the pace depends on: the next free slot, the rate and what was learned."""

    tat: float = 0.0  # when the next slot is free (GCRA's theoretical arrival time)
    rate: float = 0.0  # requests/s now; 0 until the first reservation
    rate_at: float = 0.0  # when `rate` was last advanced
    ssthresh: float = math.inf  # slow start below this rate, probing above
    pause_until: float = 0.0
    epoch: int = 0  # moves on each lesson and hold: older slots are void
    learned_at: float = -math.inf
    strikes: int = 0  # lessons in the current streak
    quick: int = 0  # 429s at the current pace within SETTLE of its lesson
    started: float = 0.0  # measures begin here: after an idle gap, a lesson's drain, a hold
    counts: tuple[tuple[int, int], ...] = ()  # see `Counts`


def bucket_of(moment: float) -> int:
    return math.floor(moment / BUCKET)


Counts = tuple[tuple[int, int], ...]  # (bucket, requests not refused), oldest first


def _add(counts: Counts, bucket: int, delta: int) -> Counts:
    table = dict(counts)
    if bucket not in table and delta < 0:
        return counts  # long gone from the ring: nothing to un-count
    table[bucket] = max(0, table.get(bucket, 0) + delta)
    newest = max(table)
    return tuple(sorted((b, n) for b, n in table.items() if b > newest - RING))


def _counted(counts: Counts, first: int, last: int) -> int:
    return sum(n for b, n in counts if first <= b <= last)


def remembered_start(remembered: Remembered, now: float) -> float:
    """The rate to start at from a remembered one: as it is for a day, then halving."""
    age = max(0.0, now - remembered.at)
    if age <= TRUST_SECONDS:
        return remembered.rate
    halvings = (age - TRUST_SECONDS) / HALF_LIFE_SECONDS
    return remembered.rate * math.pow(0.5, halvings)


def start_state(
    pace: Pace, remembered: Remembered | None, now: float, state: LimiterState | None = None
) -> LimiterState:
    """Where a limiter with no rate begins: what worked last time, or a slow start. Only
    the rate's fields are set; the rest of `state` (a pause, the epoch) stands."""
    state = state or LimiterState()
    if remembered is not None and remembered.rate > 0:
        threshold = pace.clamp(remembered.rate)
        rate = min(threshold, pace.clamp(max(pace.start, remembered_start(remembered, now))))
        return replace(state, rate=rate, rate_at=now, ssthresh=threshold)
    rate = pace.ceiling * COLD_SHARE if pace.ceiling > 0 else pace.start
    return replace(state, rate=pace.clamp(rate), rate_at=now, ssthresh=math.inf)


def advance(state: LimiterState, now: float, pace: Pace) -> LimiterState:
    """Grow the rate for the time since it was last advanced, if every slot was taken
    meanwhile (a reservation still ahead of now): a rate nobody uses proves nothing."""
    elapsed = max(0.0, now - state.rate_at)
    if state.tat <= now or elapsed == 0:
        return replace(state, rate_at=now)
    if state.rate < state.ssthresh:
        grown = min(state.ssthresh, state.rate * pace.growth**elapsed)
    else:
        grown = state.rate * (1 + pace.probe * elapsed)
    return replace(state, rate=pace.clamp(grown), rate_at=now)


def rate_at_slot(state: LimiterState, ahead: float, pace: Pace) -> float:
    """The rate a slot `ahead` seconds away is spaced at. In slow start, the rate it
    will have grown to by then: with many threads queued, slots at today's rate would
    hold the growth back by the whole queue's length."""
    if state.rate >= state.ssthresh:
        return state.rate
    return min(state.ssthresh, pace.clamp(state.rate * pace.growth**ahead))


def reserve(
    state: LimiterState,
    now: float,
    pace: Pace,
    max_wait: float,
    remembered: Remembered | None = None,
) -> tuple[LimiterState, Slot]:
    """Take the next slot, unless a pause holds or it is more than `max_wait` away."""
    if now < state.pause_until:
        return state, Slot(-(state.pause_until - now), state.epoch)
    if pace.unlimited:
        return state, Slot(0.0, state.epoch)
    if state.rate <= 0:
        state = start_state(pace, remembered, now, state)
    idle = state.tat < now - WINDOW  # nothing sent for a while: measure from here on
    state = advance(state, now, pace)
    start = max(state.tat, now)
    wait = start - now
    if wait > max_wait:
        return state, Slot(-wait, state.epoch)
    state = replace(
        state,
        tat=start + 1.0 / rate_at_slot(state, wait, pace),
        counts=_add(state.counts, bucket_of(start), 1),
        started=start if idle or not state.started else state.started,
    )
    return state, Slot(wait, state.epoch, start)


def accepted_rate(state: LimiterState, now: float) -> float | None:
    """Requests per second the API took (reserved and not refused) lately: over about
    `SAMPLE` requests, within `MIN_MEASURE` .. `MEASURE` (1 s in slow start, where the
    rate doubles each second and older counts say little), and only since `started` (a
    drain, a hold or an idle gap proves nothing). None when that is shorter than
    `MIN_MEASURE`: too few requests to tell."""
    in_slow_start = state.rate < state.ssthresh
    span = min(1.0 if in_slow_start else MEASURE, max(MIN_MEASURE, SAMPLE / state.rate))
    # Whole buckets, up to the last complete one: requests of the current bucket are
    # in flight or not sent yet, and many of those may still be refused.
    end = bucket_of(now) * BUCKET
    since = max(end - span, state.started)
    if end - since < MIN_MEASURE:
        return None
    first = bucket_of(since)
    begin = since if since > first * BUCKET else first * BUCKET  # nothing before `since`
    return _counted(state.counts, first, bucket_of(now) - 1) / (end - begin)


def drained_at(state: LimiterState, now: float, accepted: float) -> float:
    """When the last `WINDOW` will hold fewer requests than `accepted`, so a request
    then fits in a window the API counts: the oldest ones must age out first."""
    recent = [
        (b, n) for b, n in state.counts if now - WINDOW < (b + 1) * BUCKET and b <= bucket_of(now)
    ]
    excess = sum(n for _, n in recent) - max(0, math.floor(accepted) - 1)
    for bucket, count in recent:
        if excess <= 0:
            break
        excess -= count
        if excess <= 0:
            return min(now + WINDOW, (bucket + 1) * BUCKET + WINDOW)
    return now


def _hold(state: LimiterState, until: float, pace: Pace) -> LimiterState:
    """Every worker waits until `until`, then starts slower and climbs back quickly
    (slow start) to a little under the pace that kept being refused."""
    return replace(
        state, pause_until=max(state.pause_until, until), tat=until, started=until,
        rate=pace.clamp(state.rate * HOLD_CUT), rate_at=until,
        ssthresh=pace.clamp(state.rate * HOLD_SSTHRESH), epoch=state.epoch + 1,
        learned_at=until, strikes=0, quick=0, counts=_past(state.counts, until),
    )  # fmt: skip


def _past(counts: Counts, now: float) -> Counts:
    """The counts without slots still ahead: those are void once the epoch moves."""
    last = bucket_of(now)
    return tuple((b, n) for b, n in counts if b <= last)


def rate_limited(
    state: LimiterState, now: float, pace: Pace, pause: float, slot: Slot | None = None
) -> LimiterState:
    """A 429 came back for `slot`, asking to wait `pause` seconds: learn from it."""
    if slot is not None and slot.at:
        state = replace(state, counts=_add(state.counts, bucket_of(slot.at), -1))
    until = now + pause
    if pace.unlimited or state.rate <= 0:
        return replace(state, pause_until=max(state.pause_until, until))
    if slot is not None and slot.epoch != state.epoch:
        return state  # sent at an older pace: the lesson since has counted it
    if now - state.learned_at < SETTLE:
        if state.quick + 1 >= QUICK_REJECTS:
            return _hold(state, until, pace)
        return replace(state, quick=state.quick + 1)
    measured = accepted_rate(state, now)
    strikes = state.strikes + 1 if now - state.learned_at < STRIKE_SPAN else 1
    # A lesson soon after another: the last one was too bold (a burst the API allowed
    # once, a window's edge), so this one cuts at least by STREAK_CUT.
    top = state.rate * (STREAK_CUT if strikes > 1 else pace.margin)
    taught = top if measured is None else min(top, measured * pace.margin)
    rate = pace.clamp(max(taught, state.rate * MAX_CUT))
    drained = drained_at(state, now, state.rate if measured is None else measured)
    return replace(
        state,
        rate=rate, rate_at=now, ssthresh=rate, epoch=state.epoch + 1, learned_at=now,
        strikes=strikes, quick=0, tat=drained, started=drained,
        counts=_past(state.counts, now),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class View:
    """What a worker may ask of the limiter between reservations."""

    pause_left: float
    rate: float  # requests/s in force (0 before the first reservation, or unlimited)
    epoch: int


def view(state: LimiterState, now: float) -> View:
    return View(max(0.0, state.pause_until - now), state.rate, state.epoch)


class LimiterBackend(Protocol):
    """Keeps a `LimiterState` and runs each step of the algorithm on it atomically."""

    def reserve(self, max_wait: float) -> Slot: ...

    def rate_limited(self, pause: float, slot: Slot | None = None) -> None: ...

    def view(self) -> View: ...


class MemoryLimiterBackend:
    """The algorithm over state in this process; `clock` is injectable for tests."""

    def __init__(
        self,
        pace: Pace,
        clock: Callable[[], float] = time.monotonic,
        remembered: Remembered | None = None,
    ) -> None:
        self._pace = pace
        self._clock = clock
        self._state = LimiterState()
        self._remembered = remembered
        self._lock = threading.Lock()

    @property
    def state(self) -> LimiterState:
        return self._state

    def reserve(self, max_wait: float) -> Slot:
        with self._lock:
            now = self._clock()
            self._state, slot = reserve(self._state, now, self._pace, max_wait, self._remembered)
            return slot

    def rate_limited(self, pause: float, slot: Slot | None = None) -> None:
        with self._lock:
            self._state = rate_limited(self._state, self._clock(), self._pace, pause, slot)

    def view(self) -> View:
        with self._lock:
            return view(self._state, self._clock())


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
        # Slots are counted in a ring of buckets: none may lie beyond it.
        self._horizon = min(MAX_HORIZON, max(horizon, max_pause))
        self._sleep = sleep

    def acquire(self, budget: float | None = None) -> Slot:
        """Wait for a slot, at most `budget` seconds in all; returns it with the seconds
        waited as its `wait`, or raises `Throttled`."""
        waited = 0.0
        while True:
            left = math.inf if budget is None else max(0.0, budget - waited)
            slot = self.backend.reserve(min(self._horizon, left))
            if slot.wait < 0 and -slot.wait > min(self._max_pause, left):
                raise Throttled(-slot.wait)
            if slot.wait == 0:
                return replace(slot, wait=waited)  # nothing slept: nothing changed meanwhile
            self._sleep(abs(slot.wait))
            waited += abs(slot.wait)
            if slot.wait < 0:
                continue  # waited out a pause or a full horizon: ask again
            # A lesson or a pause while we slept voids the slot: take one at the new pace.
            now = self.backend.view()
            if now.pause_left <= 0 and now.epoch == slot.epoch:
                return replace(slot, wait=waited)
