"""Guardrails in the report store, on every backend: a canary's first claims go through
and the next one pauses the batch; the failure guard pauses it on a window of permanent
failures; numbers are held by one batch at a time and freed by outcomes, cancels and
expiry; a pause the batch made itself goes to its webhook's outbox."""

from __future__ import annotations

import time

import redis

from jobs.store.guardrails import GuardRule
from jobs.store.interface import (
    BatchState,
    Claim,
    ItemRecord,
    ItemSeed,
    ItemStatus,
    NewBatch,
    Outcome,
    ReportStore,
    guard_mark,
)
from jobs.store.keys import HOLDS_KEY, batch_key
from jobs.store.redis_store import RedisReportStore

URL = "https://hooks.example.com/h"


def _create(
    store: ReportStore, batch_id: str, numbers: list[str], *, live: bool = True, **options: object
) -> None:
    seeds = [ItemSeed(i, row=i + 2, number_id=n) for i, n in enumerate(numbers)]
    batch = NewBatch(batch_id, name="t", source="cli", total=len(numbers), **options)  # type: ignore[arg-type]
    store.create_batch(batch, seeds, live=live)


def _finish(store: ReportStore, batch_id: str, index: int, status: ItemStatus, http: int) -> bool:
    current = store.item(batch_id, index)
    assert current is not None
    return store.record_outcome(batch_id, current.with_outcome(Outcome(status, http, 1), 1.0))


def _state(store: ReportStore, batch_id: str) -> BatchState:
    status = store.status(batch_id)
    assert status is not None
    return status.state


def test_a_canary_lets_its_first_claims_through_then_pauses_at_the_next(
    store: ReportStore,
) -> None:
    _create(store, "b1", [f"n{i}" for i in range(6)], canary=2)
    first, second = (store.claim("b1", i, 60, f"t{i}") for i in (0, 1))
    assert first.claim is Claim.CLAIMED and first.rules is not None and first.rules.canary
    assert second.claim is Claim.CLAIMED and second.rules is not None and second.rules.canary
    assert store.claim("b1", 2, 60, "t2").claim is Claim.PAUSED
    status = store.status("b1")
    assert status is not None and status.state is BatchState.PAUSED
    assert status.paused_by == "canary" and "first 2 numbers" in (status.paused_reason or "")
    # A canary number's own run, taken again (a redelivery), is not a new claim.
    assert store.claim("b1", 3, 60, "t3").claim is Claim.PAUSED
    answer = store.continue_batch("b1", "q")
    assert answer is not None and answer[0] and answer[1].paused_reason is None
    later = store.claim("b1", 2, 60, "t2b")
    assert later.claim is Claim.CLAIMED and later.rules is not None and not later.rules.canary
    assert store.claim("b1", 3, 60, "t3b").claim is Claim.CLAIMED  # the canary is over


def test_a_pause_by_hand_during_the_canary_keeps_the_canary_going(store: ReportStore) -> None:
    _create(store, "b1", [f"n{i}" for i in range(4)], canary=2)
    assert store.claim("b1", 0, 60, "t0").claim is Claim.CLAIMED
    store.pause("b1")
    store.continue_batch("b1", "q")
    assert store.claim("b1", 1, 60, "t1").claim is Claim.CLAIMED
    assert store.claim("b1", 2, 60, "t2").claim is Claim.PAUSED  # two taken: it pauses


def test_the_guard_pauses_on_a_full_window_over_the_threshold(store: ReportStore) -> None:
    _create(store, "b1", [f"n{i}" for i in range(20)], guard=GuardRule(0.2, 10))
    # 2 of 10 failed for good: 20% is not more than 20%.
    for i in range(10):
        failed = i in (3, 7)
        status = ItemStatus.FAILED if failed else ItemStatus.SUCCEEDED
        assert _finish(store, "b1", i, status, 404 if failed else 200)
    assert _state(store, "b1") is BatchState.RUNNING
    # 429s and 5xx are not permanent: they never count.
    assert _finish(store, "b1", 10, ItemStatus.FAILED, 429)
    assert _finish(store, "b1", 11, ItemStatus.FAILED, 503)
    assert _state(store, "b1") is BatchState.RUNNING
    assert _finish(store, "b1", 12, ItemStatus.FAILED, 400)  # 3 of the last 10
    status = store.status("b1")
    assert status is not None and status.state is BatchState.PAUSED
    assert status.paused_by == "guard"
    assert status.paused_reason is not None and "3 of the last 10" in status.paused_reason
    # Continuing starts a fresh window: one more failure does not pause it again.
    store.continue_batch("b1", "q")
    assert _finish(store, "b1", 13, ItemStatus.FAILED, 404)
    assert _state(store, "b1") is BatchState.RUNNING


def test_continue_without_the_guard_never_pauses_again(store: ReportStore) -> None:
    _create(store, "b1", [f"n{i}" for i in range(12)], guard=GuardRule(0.2, 2))
    for i in range(2):
        _finish(store, "b1", i, ItemStatus.FAILED, 404)
    assert _state(store, "b1") is BatchState.PAUSED
    answer = store.continue_batch("b1", "q", no_guard=True)
    assert answer is not None and not answer[1].guard.on
    for i in range(2, 12):
        _finish(store, "b1", i, ItemStatus.FAILED, 404)
    assert _state(store, "b1") is BatchState.COMPLETED


def test_a_batch_without_a_guard_runs_to_its_end(store: ReportStore) -> None:
    _create(store, "b1", [f"n{i}" for i in range(5)])
    for i in range(5):
        _finish(store, "b1", i, ItemStatus.FAILED, 404)
    assert _state(store, "b1") is BatchState.COMPLETED


def test_guard_marks() -> None:
    def mark(status: ItemStatus, http: int | None) -> str:
        return guard_mark(ItemRecord(0, 2, "n", status, http_status=http))

    assert mark(ItemStatus.FAILED, 404) == "1" and mark(ItemStatus.FAILED, 400) == "1"
    assert mark(ItemStatus.FAILED, 429) == "0" and mark(ItemStatus.FAILED, 503) == "0"
    assert mark(ItemStatus.FAILED, None) == "0" and mark(ItemStatus.SUCCEEDED, 200) == "0"
    assert mark(ItemStatus.CANCELLED, None) == ""


def test_a_held_number_refuses_another_batch_until_its_item_ends(store: ReportStore) -> None:
    _create(store, "a", ["n1", "n2", "n3"])
    assert store.hold("a", [("n1", 0), ("n2", 1), ("n3", 2)]) == []
    _create(store, "b", ["n2", "n3", "n9"])
    wanted = [("n2", 0), ("n3", 1), ("n9", 2)]
    assert sorted(store.hold("b", wanted)) == [("n2", "a"), ("n3", "a")]
    # Refused all or nothing: n9 was not taken, so a third batch may have it.
    _create(store, "c", ["n9"])
    assert store.hold("c", [("n9", 0)]) == []
    store.release_holds("c", [("n9", 0)])
    # An outcome frees its number; the rest stay held.
    _finish(store, "a", 1, ItemStatus.SUCCEEDED, 200)
    assert store.hold("b", wanted) == [("n3", "a")]
    _finish(store, "a", 2, ItemStatus.FAILED, 404)
    assert store.hold("b", wanted) == []


def test_sharing_takes_the_free_numbers_and_leaves_the_held(store: ReportStore) -> None:
    _create(store, "a", ["n1"])
    store.hold("a", [("n1", 0)])
    _create(store, "b", ["n1", "n2"])
    assert store.hold("b", [("n1", 0), ("n2", 1)], share=True) == [("n1", "a")]
    _create(store, "c", ["n1", "n2"])
    assert sorted(store.hold("c", [("n1", 0), ("n2", 1)])) == [("n1", "a"), ("n2", "b")]


def test_a_cancelled_batch_frees_its_numbers(store: ReportStore) -> None:
    _create(store, "a", ["n1", "n2"])
    store.hold("a", [("n1", 0), ("n2", 1)])
    store.cancel("a")
    _create(store, "b", ["n1", "n2"])
    assert store.hold("b", [("n1", 0), ("n2", 1)]) == []


def test_a_staged_batch_holds_while_it_is_written(store: ReportStore) -> None:
    _create(store, "a", ["n1"], live=False)
    store.hold("a", [("n1", 0)])
    _create(store, "b", ["n1"])
    assert store.hold("b", [("n1", 0)]) == [("n1", "a")]
    store.discard("a")  # its submitter gave up: gone, so it holds nothing
    assert store.hold("b", [("n1", 0)]) == []


def test_an_expired_holder_holds_nothing(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=3600)
    _create(store, "a", ["n1"])
    store.hold("a", [("n1", 0)])
    redis_client.delete(batch_key("a"))  # as its keys expire
    _create(store, "b", ["n1"])
    assert store.hold("b", [("n1", 0)]) == []
    assert redis_client.hget(HOLDS_KEY, "n1") == b"b|0"


def test_a_stale_staged_holder_holds_nothing(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=3600)
    _create(store, "a", ["n1"], live=False)
    store.hold("a", [("n1", 0)])
    redis_client.hset(batch_key("a"), "created_at", f"{time.time() - 3600:.6f}")
    _create(store, "b", ["n1"])
    assert store.hold("b", [("n1", 0)]) == []


def test_a_big_refusal_lists_every_held_number_and_takes_nothing(
    redis_client: redis.Redis,
) -> None:
    store = RedisReportStore(redis_client, retention_seconds=3600)
    numbers = [f"n{i}" for i in range(2500)]
    _create(store, "a", numbers[2000:])
    store.hold("a", [(n, i) for i, n in enumerate(numbers[2000:])])
    _create(store, "b", numbers)
    held = store.hold("b", [(n, i) for i, n in enumerate(numbers)])
    assert len(held) == 500 and {h for _, h in held} == {"a"}
    owners = {v.split(b"|")[0] for v in redis_client.hvals(HOLDS_KEY)}
    assert owners == {b"a"} and redis_client.hlen(HOLDS_KEY) == 500


def test_a_pause_of_its_own_goes_to_the_webhook_outbox(store: ReportStore) -> None:
    _create(store, "b1", ["n1", "n2", "n3"], canary=1, webhook_url=URL)
    store.claim("b1", 0, 60, "t0")
    assert store.claim("b1", 1, 60, "t1").claim is Claim.PAUSED
    assert store.take_due_webhook("w1") == "b1|paused"
    assert store.take_due_webhook("w2") is None
    store.record_webhook("b1|paused", "delivered", 1, None, owner="w1")
    status = store.status("b1")
    # The end's webhook is untouched: it is still to come.
    assert status is not None and status.webhook is not None
    assert status.webhook.status == "waiting" and status.pauses == 1


def test_a_selection_takes_the_same_check_at_listing_time(store: ReportStore) -> None:
    from jobs.batch.validation import BatchItem
    from worker.selector import _hold

    _create(store, "a", ["n1"])
    store.hold("a", [("n1", 0)])
    found = [BatchItem(2, "n1", "{}"), BatchItem(3, "n2", "{}")]
    store.create_batch(NewBatch("s", name="t", source="cli", total=0, selecting=True), [])
    assert store.begin_selection("s")

    refused = _hold(store, "s", found)

    assert refused is not None and "n1 (batch a)" in refused and "n2" not in refused
    store.create_batch(
        NewBatch("s2", name="t", source="cli", total=0, selecting=True, allow_overlap=True), []
    )
    assert _hold(store, "s2", found) is None  # allowed: it takes n2 and leaves n1 to a
