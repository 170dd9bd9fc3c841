"""The learner against each kind of server limit, in simulated time.

A discrete-event run: `WORKERS` threads take slots from the real algorithm
(`MemoryLimiterBackend` on a virtual clock), send at their slot, the server (the
simulator's own limiters, `simulator.limits`) accepts or answers 429 with a Retry-After,
and the answer comes back after the latency. Each thread does what `worker.retry` does:
after a 429 it reports the slot to the limiter, waits the Retry-After itself and takes a
new slot. Nothing sleeps; a run of 300 numbers takes milliseconds, so every mode and
every setting is checked on every test run. `bench.api_pace` measures the same against
the real simulator and real workers.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

import pytest

from simulator.limits import RATE_LIMIT_MODES, make_limiter
from worker.limiter import MemoryLimiterBackend, Pace, Remembered, Slot

L = 10.0  # the server's limit, requests/s
WORKERS = 16


@dataclass
class Run:
    sent: list[tuple[float, int]] = field(default_factory=list)  # (arrival, status)
    done_at: float = 0.0

    @property
    def accepted(self) -> list[float]:
        return [at for at, status in self.sent if status == 200]

    def share_429(self) -> float:
        return sum(status == 429 for _, status in self.sent) / len(self.sent)

    def accepted_rate(self) -> float:
        """Accepted requests per second, from the first request to the last answer."""
        return len(self.accepted) / (self.done_at - self.sent[0][0])

    def most_in_one_second(self) -> int:
        stamps = sorted(self.accepted)
        return max(sum(1 for s in stamps if start <= s < start + 1.0) for start in stamps)


def simulate(
    mode: str,
    pace: Pace,
    numbers: int = 300,
    *,
    latency: float = 0.02,
    jitter: float = 0.003,
    remembered: Remembered | None = None,
    limit: float = L,
    seed: int = 1,
) -> Run:
    """Send `numbers` requests through the limiter to a server limited to `limit`/s."""
    clock = [1000.3]
    backend = MemoryLimiterBackend(pace, clock=lambda: clock[0], remembered=remembered)
    server = make_limiter(mode, limit, 1.0)
    rng = random.Random(seed)
    run, todo = Run(), [numbers]
    events: list[tuple[float, int, str, Slot | None]] = []  # (time, worker, what, slot)
    for worker in range(WORKERS):
        heapq.heappush(events, (clock[0], worker, "take", None))

    def take(worker: int) -> None:
        slot = backend.reserve(30.0)
        if slot.wait < 0:
            heapq.heappush(events, (clock[0] - slot.wait, worker, "retake", None))
        else:
            heapq.heappush(events, (clock[0] + slot.wait, worker, "send", slot))

    while events:
        clock[0], worker, what, slot = heapq.heappop(events)
        if what == "take":
            if todo[0] <= 0:
                continue
            todo[0] -= 1
            take(worker)
        elif what == "retake":
            take(worker)
        elif what == "send":
            assert slot is not None
            now = backend.view()
            if now.pause_left > 0 or now.epoch != slot.epoch:
                take(worker)  # the slot went void while waiting: as `Limiter.acquire`
                continue
            arrival = clock[0] + latency + rng.uniform(0, jitter)
            wait = server.take(arrival)
            run.sent.append((arrival, 429 if wait else 200))
            answered = arrival + latency + rng.uniform(0, jitter)
            if wait:
                retry_after = max(1, math.ceil(wait))
                heapq.heappush(events, (answered, worker, f"429:{retry_after}", slot))
            else:
                run.done_at = max(run.done_at, answered)
                heapq.heappush(events, (answered, worker, "take", None))
        else:
            assert slot is not None
            retry_after = float(what.split(":")[1])
            backend.rate_limited(retry_after, slot)
            heapq.heappush(events, (clock[0] + retry_after, worker, "retake", None))
    assert len(run.accepted) == numbers
    return run


SETTINGS = {
    "limit 2L": Pace(ceiling=2 * L * 0.98),
    "unset": Pace(),
}


@pytest.mark.parametrize("mode", RATE_LIMIT_MODES)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_from_a_cold_start_it_finds_the_limit_with_few_429s(mode: str, setting: str) -> None:
    run = simulate(mode, SETTINGS[setting])
    assert run.accepted_rate() >= 0.9 * L, run.accepted_rate()
    assert run.share_429() <= 0.03, run.share_429()


@pytest.mark.parametrize("mode", RATE_LIMIT_MODES)
def test_a_long_run_stays_near_the_limit(mode: str) -> None:
    run = simulate(mode, Pace(), numbers=3000)
    assert run.accepted_rate() >= 0.93 * L
    assert run.share_429() <= 0.02


def test_without_a_server_limit_a_ceiling_is_held() -> None:
    run = simulate("bucket", Pace(ceiling=20 * 0.98), limit=10_000)
    assert run.share_429() == 0
    assert run.accepted_rate() >= 19.0
    assert run.most_in_one_second() <= 21


def test_unset_grows_past_a_high_limit() -> None:
    # No ceiling and an API that takes 200/s: from 10/s, doubling each second, the slow
    # start is there in about 4.3 s of a 20 s run.
    run = simulate("sliding", Pace(), numbers=3000, limit=200)
    assert run.accepted_rate() >= 0.7 * 200
    assert run.share_429() <= 0.03


def test_what_worked_last_time_is_where_the_next_batch_starts() -> None:
    cold = simulate("sliding", Pace(), numbers=100)
    warm = simulate("sliding", Pace(), numbers=100, remembered=Remembered(9.5, at=900.0))
    assert warm.accepted_rate() > cold.accepted_rate()
    assert warm.share_429() <= cold.share_429()
