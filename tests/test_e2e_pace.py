"""The learned pace end to end: real workers against the simulator limited in each of
the ways real APIs count (a sliding or fixed 1-second window, a token bucket with or
without a burst), from a cold start with nothing learned. Short runs, so the bounds are
looser than the issue's targets, which `bench.api_pace` measures on 300 numbers."""

from __future__ import annotations

import pytest
import redis

from jobs.store.pace import read_paces
from simulator.limits import RATE_LIMIT_MODES
from simulator.state import generate_numbers
from simulator.stats import most_in_one_second
from tests.conftest import StartWorkers
from tests.helpers import Simulator, submit_rows, wait_for_batch

# Rates measured at the simulator: `make test` runs these alone, after the others, so the
# other test processes' load does not bunch or slow the requests they count.
pytestmark = [pytest.mark.e2e, pytest.mark.alone]

HEADER = "id,provider,assistantId"
LIMIT = 10


def _forget_learned_pace(client: redis.Redis) -> None:
    for key in client.scan_iter("phonebatch:limiter:*"):
        client.delete(key)


@pytest.mark.parametrize("mode", RATE_LIMIT_MODES)
def test_the_pace_is_learned_behind_each_kind_of_limit(
    mode: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(80, seed=91)
    simulator.reset(numbers)
    simulator.set_faults(rate_limit=LIMIT, rate_limit_mode=mode, latency_ms=10)
    _forget_learned_pace(redis_client)
    queue, workers = start_workers(count=2, concurrency=4, PHONEBATCH_RATE_LIMIT="auto")
    rows = [f"{n['id']},{n['provider']},asst_paced" for n in numbers]
    store, batch_id = submit_rows(redis_client, queue, HEADER, rows)

    final = wait_for_batch(store, batch_id, workers, timeout=60)

    assert final.counts.succeeded == 80
    log = simulator.requests()
    accepted = sorted(r["at"] for r in log if r["status"] == 200)
    refused = sum(r["status"] == 429 for r in log)
    rate = (len(accepted) - 1) / (accepted[-1] - accepted[0])
    summary = f"{mode}: {rate:.2f}/s, {refused} of {len(log)} answered 429"
    assert rate >= 0.7 * LIMIT, summary  # a cold start weighs on an 8-second run
    assert refused <= 10, summary  # a handful, whatever the way the API counts
    assert len(log) == 1 + 80 + refused  # one listing page, one PATCH each, the retries


def test_a_set_limit_is_a_ceiling_the_pace_never_passes(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(150, seed=92)
    simulator.reset(numbers)
    _forget_learned_pace(redis_client)
    queue, workers = start_workers(count=2, concurrency=8, PHONEBATCH_RATE_LIMIT="20")
    rows = [f"{n['id']},{n['provider']},asst_ceiling" for n in numbers]
    store, batch_id = submit_rows(redis_client, queue, HEADER, rows)

    final = wait_for_batch(store, batch_id, workers, timeout=60)

    assert final.counts.succeeded == 150
    stamps = [float(r["at"]) for r in simulator.requests()]
    assert most_in_one_second(stamps) <= 21
    assert not [r for r in simulator.requests() if r["status"] == 429]


def _first_second(at: list[float]) -> int:
    """Requests in the first second of a run."""
    return sum(t < at[0] + 1.0 for t in at)


def test_the_next_batch_starts_at_the_pace_learned_by_the_last(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    """Tonight's batch starts where last night's settled (kept in Redis per API and key),
    not from a cold start: its first second already runs near the API's limit."""
    limit, count = 40, 200
    numbers = generate_numbers(count, seed=93)
    _forget_learned_pace(redis_client)
    seconds: list[int] = []
    for night in ("asst_monday", "asst_tuesday"):
        simulator.reset(numbers)  # and its request log
        simulator.set_faults(rate_limit=limit, rate_limit_mode="sliding", latency_ms=10)
        # New worker processes each night: what carries over is in Redis alone.
        queue, workers = start_workers(count=1, concurrency=8, PHONEBATCH_RATE_LIMIT="auto")
        rows = [f"{n['id']},{n['provider']},{night}" for n in numbers]
        store, batch_id = submit_rows(redis_client, queue, HEADER, rows)
        final = wait_for_batch(store, batch_id, workers, timeout=90)
        assert final.counts.succeeded == count
        seconds.append(_first_second(sorted(r["at"] for r in simulator.requests())))

    cold, remembered = seconds
    # What the workers wrote, as front ends (`phonebatch status`) read it.
    (pace,) = read_paces(redis_client)
    assert pace.api == simulator.url and pace.learned is not None
    assert 0.7 * limit <= pace.learned <= limit
    assert cold <= 0.6 * limit, seconds  # nothing learned: it starts at PHONEBATCH_RATE_START
    assert remembered >= 0.7 * limit, seconds  # at what was learned, from the first second
