"""The limiter: its algorithm exactly (pure functions, a fake clock), then the same
behaviour from both backends, in memory and in Redis (a Lua script on Redis's clock).

How well the learner does against each kind of server limit is
`tests/test_limiter_learning.py`; here, each rule on its own.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
import redis

from jobs.store.pace import limiter_key
from worker.limiter import (
    SETTLE,
    Limiter,
    LimiterBackend,
    LimiterState,
    MemoryLimiterBackend,
    Pace,
    Remembered,
    Slot,
    Throttled,
    accepted_rate,
    rate_limited,
    remembered_start,
    reserve,
    start_state,
)
from worker.limiter_redis import RedisInFlightCap, RedisLimiterBackend

FLAT = Pace(ceiling=20.0, start=10.0, growth=1.0, probe=0.0)  # 10/s, no growth


def _reserve_all(state: LimiterState, now: float, pace: Pace, count: int) -> list[Slot]:
    slots = []
    for _ in range(count):
        state, slot = reserve(state, now, pace, max_wait=30)
        slots.append(slot)
    return slots


def test_slots_are_spaced_one_interval_apart() -> None:
    waits = [round(s.wait, 9) for s in _reserve_all(LimiterState(), 100.0, FLAT, 4)]
    assert waits == [0.0, 0.1, 0.2, 0.3]


def test_a_slot_beyond_the_max_wait_is_not_reserved() -> None:
    state = replace(start_state(FLAT, None, 100.0), tat=103.0)
    after, slot = reserve(state, 100.0, FLAT, max_wait=2)
    assert slot.wait == -3.0 and after.tat == 103.0


def test_a_cold_start_begins_at_half_the_ceiling_or_the_start_rate() -> None:
    assert start_state(Pace(ceiling=20.0), None, 0.0).rate == 10.0
    assert start_state(Pace(start=7.0), None, 0.0).rate == 7.0


def test_slow_start_grows_only_while_every_slot_is_taken() -> None:
    pace = Pace(start=10.0, growth=2.0)
    state = start_state(pace, None, 100.0)
    idle, _ = reserve(state, 101.0, pace, 30)  # nobody waited meanwhile: no growth
    assert idle.rate == 10.0
    busy = replace(state, tat=102.0)  # a queue of slots a second long
    grown, _ = reserve(busy, 101.0, pace, 30)
    assert grown.rate == pytest.approx(20.0)


def test_a_ceiling_is_never_passed() -> None:
    pace = Pace(ceiling=12.0, growth=4.0)
    state = replace(start_state(pace, None, 0.0), tat=50.0)
    state, _ = reserve(state, 10.0, pace, 100)
    assert state.rate == 12.0


def test_a_429_teaches_the_rate_the_api_accepted() -> None:
    # 20 slots over two seconds at 10/s, then a 429: the API took ~10/s, so the pace is
    # 95% of that, the epoch moves (older slots are void) and the queue is drained.
    pace = Pace(ceiling=40.0, start=10.0, growth=1.0)
    state, slots = LimiterState(), []
    for tick in range(20):
        state, slot = reserve(state, 100.0 + tick / 10, pace, 30)
        slots.append(slot)
    taught = rate_limited(state, 102.05, pace, 1.0, slots[-1])
    assert taught.rate == pytest.approx(9.5, abs=1.0)  # counts are whole: +-1 in 10
    assert taught.epoch == state.epoch + 1
    assert taught.pause_until == 0  # the others go on: only this request waits
    again = rate_limited(taught, 102.06, pace, 1.0, slots[-2])  # same pace as the first
    assert again == replace(taught, counts=again.counts)  # already counted: no lesson


def test_429s_that_keep_coming_hold_everyone_for_the_retry_after() -> None:
    pace = Pace(ceiling=40.0, start=10.0, growth=1.0)
    state = LimiterState()
    for tick in range(20):
        state, _ = reserve(state, 100.0 + tick / 10, pace, 30)
    state = rate_limited(state, 102.0, pace, 1.0, None)
    rate = state.rate
    for n in range(1, 3):  # 429s right after the lesson, at its pace
        state = rate_limited(state, 102.0 + n * SETTLE / 4, pace, 1.0, Slot(0, state.epoch))
    assert state.pause_until == pytest.approx(102.0 + 2 * SETTLE / 4 + 1.0)
    assert state.rate < rate
    _, slot = reserve(state, 102.5, pace, 30)
    assert slot.wait < 0  # nobody sends during the hold


def test_a_429_too_early_to_measure_cuts_by_the_margin_only() -> None:
    # 80 ms after the first slot there is nothing to measure: the pace is not sent to the
    # floor, only cut to 95%.
    pace = Pace(ceiling=40.0, growth=1.0)
    state, slot = reserve(LimiterState(), 100.0, pace, 30)
    taught = rate_limited(state, 100.08, pace, 1.0, slot)
    assert taught.rate == pytest.approx(state.rate * pace.margin)


def test_no_lesson_cuts_below_half_the_pace() -> None:
    # Another client used the API's window: we measure almost nothing accepted.
    pace = Pace(ceiling=40.0, growth=1.0)
    state = LimiterState()
    for tick in range(20):
        state, slot = reserve(state, 100.0 + tick / 10, pace, 30)
        state = rate_limited(state, 100.0 + tick / 10 + 0.02, pace, 1.0, Slot(0, -1, slot.at))
    taught = rate_limited(state, 102.05, pace, 1.0, None)
    assert taught.rate == pytest.approx(state.rate * 0.5)


def test_a_hold_voids_the_queue_of_slots_ahead() -> None:
    pace = Pace(ceiling=40.0, start=10.0, growth=1.0)
    state = LimiterState()
    for _ in range(30):  # three seconds of slots queued ahead
        state, _ = reserve(state, 100.0, pace, 30)
    state = rate_limited(state, 100.5, pace, 1.0, None)
    for n in range(1, 3):
        state = rate_limited(state, 100.5 + n * 0.05, pace, 1.0, Slot(0, state.epoch))
    assert state.pause_until == pytest.approx(101.6)
    assert state.tat == state.pause_until  # not the old queue's end, 3 s away
    assert all(bucket * 0.1 <= 100.6 for bucket, _ in state.counts)
    _, slot = reserve(state, 101.7, pace, 30)
    assert slot.wait == 0.0


def test_the_next_lesson_measures_from_the_end_of_the_drain() -> None:
    pace = Pace(ceiling=40.0, start=10.0, growth=1.0)
    state = LimiterState()
    for tick in range(20):
        state, _ = reserve(state, 100.0 + tick / 10, pace, 30)
    state = rate_limited(state, 102.05, pace, 1.0, None)
    assert state.started == state.tat >= 102.05  # measures begin after the drain


def test_the_measure_ignores_the_bucket_still_in_flight() -> None:
    pace = Pace(ceiling=40.0, start=10.0, growth=1.0)
    state = LimiterState()
    for tick in range(10):
        state, _ = reserve(state, 100.0 + tick / 10, pace, 30)
    assert accepted_rate(state, 101.0) == pytest.approx(10.0)


def test_unlimited_means_no_wait_but_a_429_pauses_everyone() -> None:
    free = Pace(unlimited=True)
    assert reserve(LimiterState(), 5.0, free, 1)[1].wait == 0.0
    paused = rate_limited(LimiterState(), 5.0, free, pause=2.0)
    assert reserve(paused, 6.0, free, 1)[1].wait == -1.0


def test_a_remembered_rate_is_trusted_a_day_then_halves_daily() -> None:
    learned = Remembered(12.0, at=0.0)
    assert remembered_start(learned, 3600.0) == 12.0
    assert remembered_start(learned, 2 * 86_400.0) == pytest.approx(6.0)
    state = start_state(Pace(start=5.0), learned, 3 * 86_400.0)
    assert (state.rate, state.ssthresh) == (5.0, 12.0)  # slow start back up to it


def test_the_key_is_a_fingerprint_never_the_api_key() -> None:
    key = limiter_key("https://api.vapi.ai", "sk-secret-123")
    assert "sk-secret" not in key and key.startswith("phonebatch:limiter:")
    assert key == limiter_key("https://api.vapi.ai/", "sk-secret-123")
    assert key != limiter_key("https://api.vapi.ai", "another-key")


# --- the same behaviour from both backends ---------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def backend_for(request: pytest.FixtureRequest) -> Any:
    def make(pace: Pace) -> LimiterBackend:
        if request.param == "memory":
            return MemoryLimiterBackend(pace)
        client: redis.Redis = request.getfixturevalue("redis_client")
        return RedisLimiterBackend(client, pace, "phonebatch:limiter:test")

    return make


def test_backend_paces_reservations(backend_for: Any) -> None:
    backend = backend_for(Pace(ceiling=40.0, growth=1.0))  # starts at 20/s
    slots = [backend.reserve(5.0) for _ in range(5)]
    assert slots[0].wait == pytest.approx(0.0, abs=0.01)
    for before, after in itertools.pairwise(slots):  # on the limiter's clock: exact
        assert after.at - before.at == pytest.approx(0.05, abs=1e-6)
    assert backend.reserve(0.1).wait < 0  # the next slot is ~0.25 s away: not reserved


def test_backend_learns_from_a_429(backend_for: Any) -> None:
    backend = backend_for(Pace(ceiling=40.0, growth=1.0))
    limiter = Limiter(backend, max_pause=1.0)
    slots = [limiter.acquire() for _ in range(12)]  # 20/s for ~0.6 s
    time.sleep(0.15)
    before = backend.view()
    backend.rate_limited(1.0, slots[-1])
    after = backend.view()
    assert after.epoch == before.epoch + 1
    assert after.pause_left == 0  # nobody else stops
    assert 5.0 <= after.rate < before.rate  # about 95% of the ~17/s measured


def test_limiter_takes_a_new_slot_when_a_lesson_voids_its_own(backend_for: Any) -> None:
    backend = backend_for(Pace(ceiling=4.0, growth=1.0))  # 2/s: slots 0.5 s apart
    limiter = Limiter(backend, max_pause=1.0)
    first = limiter.acquire()
    taught = threading.Timer(0.2, lambda: backend.rate_limited(1.0, first))
    taught.start()
    second = limiter.acquire()  # slept toward a slot the lesson voided, then re-reserved
    taught.join()
    assert second.epoch == first.epoch + 1


def test_limiter_waits_out_short_pauses_and_throttles_long_ones(backend_for: Any) -> None:
    backend = backend_for(Pace(unlimited=True))
    limiter = Limiter(backend, max_pause=0.5)
    backend.rate_limited(0.2)
    started = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - started >= 0.15
    backend.rate_limited(5.0)
    with pytest.raises(Throttled) as caught:
        limiter.acquire()
    assert 4.5 < caught.value.delay <= 5.0


def test_backend_shared_by_threads_never_goes_over_the_rate(backend_for: Any) -> None:
    limiter = Limiter(backend_for(Pace(ceiling=100.0, growth=1.0)), max_pause=1.0)  # 50/s
    slots: list[float] = []  # when each slot is, on the limiter's clock
    stamps: list[float] = []  # when its thread had it back, on ours
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            slot = limiter.acquire()
            with lock:
                stamps.append(time.monotonic())
                slots.append(slot.at)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    stamps.sort()
    assert len(slots) == len(stamps) == 60
    # The rate is checked on the slots the limiter handed out: the times threads got them
    # back also carry the scheduler's delays (a busy CPU, under `pytest -n`, bunches them).
    most = max(sum(1 for s in slots if start <= s < start + 0.5) for start in slots)
    assert most <= 26  # 50/s over half a second, plus the one at the edge
    assert slots[-1] - slots[0] == pytest.approx(59 / 50, abs=0.1)
    # And the threads did wait for them: a late thread can stretch this, none can shrink it.
    assert stamps[-1] - stamps[0] >= 59 / 50 - 0.1


def test_redis_backend_mirrors_the_algorithm(redis_client: redis.Redis) -> None:
    """The same steps on both backends end in the same pace (within the clock's drift)."""
    pace = Pace(ceiling=40.0, growth=1.0)
    ours = MemoryLimiterBackend(pace)
    theirs = RedisLimiterBackend(redis_client, pace, "phonebatch:limiter:mirror")
    for backend in (ours, theirs):
        slots = [backend.reserve(5.0) for _ in range(10)]
        time.sleep(0.3)
        backend.rate_limited(1.0, slots[-1])
    mine, redis_view = ours.view(), theirs.view()
    assert redis_view.epoch == mine.epoch == 1
    assert redis_view.rate == pytest.approx(mine.rate, rel=0.15)


def test_a_decayed_memory_is_not_written_back_as_new(redis_client: redis.Redis) -> None:
    key = "phonebatch:limiter:old-memory"
    three_days_ago = float(redis_client.time()[0]) - 3 * 86_400
    redis_client.set(f"{key}:learned", f"100|{three_days_ago}")
    backend = RedisLimiterBackend(redis_client, Pace(), key)
    for _ in range(5):
        backend.reserve(5.0)
    assert backend.view().rate == pytest.approx(25.0, rel=0.01)  # halved twice
    assert redis_client.get(f"{key}:learned") == f"100|{three_days_ago}".encode()


def test_the_learned_rate_is_where_the_next_batch_starts(redis_client: redis.Redis) -> None:
    key = "phonebatch:limiter:remembered"
    tonight = RedisLimiterBackend(redis_client, Pace(ceiling=40.0, growth=1.0), key)
    slots = [tonight.reserve(5.0) for _ in range(10)]
    time.sleep(0.3)
    tonight.rate_limited(1.0, slots[-1])
    learned = tonight.view().rate
    assert redis_client.ttl(f"{key}:learned") > 6 * 86_400
    redis_client.delete(key)  # the state is gone (expired); what was learned is not
    tomorrow = RedisLimiterBackend(redis_client, Pace(ceiling=40.0, growth=1.0), key)
    tomorrow.reserve(5.0)
    assert tomorrow.view().rate == pytest.approx(learned, rel=0.01)


def test_front_ends_read_the_pace_workers_keep(redis_client: redis.Redis) -> None:
    from jobs.cli.inspection import pace_line
    from jobs.store.pace import LIMITERS_KEY, read_paces

    key = limiter_key("https://api.example", "sk-front")
    redis_client.hset(LIMITERS_KEY, key, "https://api.example")  # as a worker does at start
    redis_client.hset(LIMITERS_KEY, "phonebatch:limiter:gone", "https://old.example")
    backend = RedisLimiterBackend(redis_client, Pace(ceiling=40.0, growth=1.0), key)
    slots = [backend.reserve(5.0) for _ in range(10)]
    time.sleep(0.3)
    backend.rate_limited(2.0, slots[-1])  # a lesson
    again = [backend.reserve(5.0) for _ in range(2)]
    for slot in again:  # 429s at the new pace at once: every worker holds
        backend.rate_limited(2.0, slot)

    (reading,) = read_paces(redis_client)  # the limiter with no state left is not shown

    assert reading.api == "https://api.example"
    assert reading.rate == pytest.approx(backend.view().rate, rel=0.01) and reading.rate > 0
    assert 1.0 < reading.held_for <= 2.0
    assert reading.learned is not None and reading.learned_age is not None
    assert reading.learned_age < 5
    line = pace_line(reading)
    assert line.startswith("https://api.example: ") and "holds" in line and "learned" in line


def test_without_a_limit_a_worker_rechecks_the_pause_at_most_every_interval(
    redis_client: redis.Redis,
) -> None:
    now = [0.0]
    key = "phonebatch:limiter:test-free"
    free = Pace(unlimited=True)
    ours = RedisLimiterBackend(redis_client, free, key, clock=lambda: now[0])
    other = RedisLimiterBackend(redis_client, free, key, clock=lambda: now[0])
    assert ours.reserve(1.0).wait == 0.0
    other.rate_limited(5.0)  # another worker's 429
    assert other.reserve(1.0).wait < 0  # the worker that saw it holds back at once
    assert ours.reserve(1.0).wait == 0.0  # ours trusts its last look for the interval...
    now[0] += 0.11
    assert -5.0 <= ours.reserve(1.0).wait < -4.5  # ...and then sees the pause
    ours.rate_limited(5.0)
    assert ours.reserve(1.0).wait < 0  # its own 429 at once


def test_a_429_during_a_pause_check_is_not_forgotten(redis_client: redis.Redis) -> None:
    backend = RedisLimiterBackend(
        redis_client, Pace(unlimited=True), "phonebatch:limiter:test-race"
    )
    asks = backend._reserve

    def racing(**kwargs: Any) -> Any:
        answer = asks(**kwargs)  # Redis says: no pause...
        backend.rate_limited(5.0)  # ...while another thread of ours gets a 429
        return answer

    backend._reserve = racing  # type: ignore[assignment]
    assert backend.reserve(1.0).wait == 0.0
    backend._reserve = asks  # type: ignore[assignment]
    assert backend.reserve(1.0).wait < 0  # the stale "no pause" was not trusted


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
