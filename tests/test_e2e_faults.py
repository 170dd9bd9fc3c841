"""Retries, the shared pause, the global limit and the auth breaker, end to end: real
worker processes against the simulator with its faults switched on."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import pytest
import redis

from jobs.store.interface import ItemStatus, iter_items
from simulator.state import generate_numbers
from simulator.stats import most_in_one_second
from tests.conftest import StartWorkers
from tests.helpers import Simulator, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e

HEADER = "id,provider,assistantId"


def _rows(numbers: list[dict[str, object]], assistant: str) -> list[str]:
    return [f"{n['id']},{n['provider']},{assistant}" for n in numbers]


def test_every_number_ends_right_through_every_kind_of_fault(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(400, seed=31)
    simulator.reset(numbers)
    missing = [str(n["id"]) for n in numbers[::40]]  # 10 ids that always 404
    simulator.set_faults(
        p429=0.15, p5xx=0.10, p_hang=0.03, hang_seconds=2.0, p_drop=0.02,
        always_404=missing, seed=3,
    )  # fmt: skip
    queue, workers = start_workers(
        count=2, concurrency=16, PHONEBATCH_READ_TIMEOUT="0.5", PHONEBATCH_MAX_ATTEMPTS="10",
        PHONEBATCH_BACKOFF_BASE="0.05", PHONEBATCH_BACKOFF_CAP="0.5",
    )  # fmt: skip
    store, batch_id = submit_rows(redis_client, queue, HEADER, _rows(numbers, "asst_moved"))

    final = wait_for_batch(store, batch_id, workers, timeout=150)

    assert final.counts.succeeded == 390, final
    assert final.counts.failed == 10
    failed = list(iter_items(store, batch_id, 400, only=frozenset({ItemStatus.FAILED})))
    assert sorted(r.number_id for r in failed) == sorted(missing)
    assert {(r.http_status, r.attempts) for r in failed} == {(404, 1)}
    log = simulator.requests()
    # One request each: the PATCH, from the listing's read, that the API answered 404.
    assert Counter(r["id"] for r in log if r["id"] in missing) == dict.fromkeys(missing, 1)
    assert {r["status"] for r in log if r["id"] in missing} == {404}
    state = simulator.numbers()
    assert all(
        state[str(n["id"])]["assistantId"] == "asst_moved"
        for n in numbers
        if n["id"] not in missing
    )
    faults = Counter(r["fault"] for r in log)
    for fault in ("random-429", "server-error", "hang", "drop"):
        assert faults[fault] > 0, faults  # every fault really happened
    retried = [r for r in iter_items(store, batch_id, 400) if r.attempts > 1]
    assert retried and all(r.status is ItemStatus.SUCCEEDED for r in retried)


@pytest.mark.alone  # no request inside a 1 s pause: a busy CPU delays some into it
def test_retry_after_holds_every_worker(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(40, seed=32)
    simulator.reset(numbers)
    simulator.set_faults(p429=0.2, retry_after=1, seed=5)
    queue, workers = start_workers(count=2, concurrency=4)
    store, batch_id = submit_rows(redis_client, queue, HEADER, _rows(numbers, "asst_b"))

    final = wait_for_batch(store, batch_id, workers, timeout=90)

    assert final.counts.succeeded == 40
    log = simulator.requests("PATCH")
    throttles = [r["at"] for r in log if r["status"] == 429]
    assert throttles
    for at in throttles:
        # Requests already on their way may land just after; then nobody sends until
        # the Retry-After has passed, on any worker.
        inside = [r for r in log if at + 0.15 < r["at"] < at + 0.95]
        assert inside == [], f"requests during the pause after {at}: {inside}"
    by_id: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in log:
        by_id[str(r["id"])].append(r)
    for tries in by_id.values():
        for first, second in itertools.pairwise(tries):
            if first["status"] == 429:
                assert float(second["at"]) - float(first["at"]) >= 0.95  # type: ignore[arg-type]


@pytest.mark.alone  # a rate measured at the simulator
def test_two_workers_share_one_limit(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(100, seed=33)
    simulator.reset(numbers)
    queue, workers = start_workers(count=2, concurrency=8, PHONEBATCH_RATE_LIMIT="20")
    store, batch_id = submit_rows(redis_client, queue, HEADER, _rows(numbers, "asst_c"))

    final = wait_for_batch(store, batch_id, workers, timeout=60)

    assert final.counts.succeeded == 100
    stamps = [float(r["at"]) for r in simulator.requests()]  # reads and updates alike
    assert most_in_one_second(stamps) <= 21
    rate = (len(stamps) - 1) / (max(stamps) - min(stamps))
    assert 18.0 <= rate <= 20.5
    served_by = [w.log.read_text() for w in workers]
    assert all("succeeded" in text for text in served_by)  # both workers did share the work


def test_a_refused_key_stops_the_batch_early(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(200, seed=34)
    simulator.reset(numbers)
    simulator.set_faults(fail_auth=True)
    queue, workers = start_workers(count=2, concurrency=8)
    store, batch_id = submit_rows(redis_client, queue, HEADER, _rows(numbers, "asst_d"))

    final = wait_for_batch(store, batch_id, workers, timeout=60)

    assert final.counts.failed == 200
    assert final.halted_reason is not None and "refused the key" in final.halted_reason
    assert "VAPI_API_KEY" in final.halted_reason
    listing = simulator.requests("LIST")
    assert [r["status"] for r in listing] == [401]  # refused: the items read by GET
    sent = [r for r in simulator.requests() if r["method"] != "LIST"]
    assert len(sent) <= 20
    items = list(iter_items(store, batch_id, 200))
    not_attempted = [r for r in items if r.attempts == 0]
    assert len(not_attempted) == 200 - len(sent)
    assert all(r.error == final.halted_reason for r in not_attempted)
    assert all(r.http_status == 401 for r in items if r.attempts == 1)
