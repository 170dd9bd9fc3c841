"""The report store's contract, run against every backend (Redis and in-memory)."""

from __future__ import annotations

import threading
import time

import redis

from jobs.operations.recovery import is_quiet
from jobs.store.interface import (
    BatchMode,
    BatchState,
    Claim,
    ItemRecord,
    ItemSeed,
    ItemStatus,
    NewBatch,
    Outcome,
    ReportStore,
    SendRules,
    iter_items,
)
from jobs.store.keys import batch_key, items_key, parked_key
from jobs.store.memory_store import MemoryReportStore
from jobs.store.redis_store import RedisReportStore


def _create(store: ReportStore, batch_id: str = "b1", total: int = 3) -> None:
    seeds = [ItemSeed(i, row=i + 2, number_id=f"n{i}") for i in range(total)]
    store.create_batch(NewBatch(batch_id, name="t", source="cli", total=total), seeds)


def _outcome(store: ReportStore, index: int, status: ItemStatus, batch_id: str = "b1") -> bool:
    current = store.item(batch_id, index)
    assert current is not None
    record = current.with_outcome(Outcome(status, http_status=200, attempts=1), finished_at=1.0)
    return store.record_outcome(batch_id, record)


def test_a_new_batch_is_queued_with_every_item_pending(store: ReportStore) -> None:
    _create(store)
    status = store.status("b1")
    assert status is not None
    assert status.state is BatchState.QUEUED
    assert status.counts.as_dict() == {
        "total": 3, "pending": 3, "succeeded": 0, "failed": 0, "skipped": 0, "cancelled": 0,
    }  # fmt: skip
    assert [(r.row, r.number_id, r.status) for r in store.items("b1")] == [
        (2, "n0", ItemStatus.PENDING), (3, "n1", ItemStatus.PENDING), (4, "n2", ItemStatus.PENDING),
    ]  # fmt: skip


def test_outcomes_move_counters_and_the_last_one_completes(store: ReportStore) -> None:
    _create(store)
    assert _outcome(store, 0, ItemStatus.SUCCEEDED)
    running = store.status("b1")
    assert running is not None and running.state is BatchState.RUNNING
    assert running.started_at is not None
    assert _outcome(store, 1, ItemStatus.FAILED)
    assert _outcome(store, 2, ItemStatus.SKIPPED)
    done = store.status("b1")
    assert done is not None
    assert done.state is BatchState.COMPLETED and done.finished_at is not None
    c = done.counts
    assert (c.pending, c.succeeded, c.failed, c.skipped) == (
        0, 1, 1, 1,
    )  # fmt: skip


def test_recording_twice_counts_once(store: ReportStore) -> None:
    _create(store)
    assert _outcome(store, 1, ItemStatus.SUCCEEDED) is True
    assert _outcome(store, 1, ItemStatus.FAILED) is False  # a second run changes nothing
    status = store.status("b1")
    assert status is not None
    assert (status.counts.succeeded, status.counts.failed, status.counts.pending) == (1, 0, 2)
    item = store.item("b1", 1)
    assert item is not None and item.status is ItemStatus.SUCCEEDED


def test_concurrent_recorders_of_one_item_count_it_once(store: ReportStore) -> None:
    _create(store, total=1)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def record() -> None:
        barrier.wait()
        results.append(_outcome(store, 0, ItemStatus.SUCCEEDED))

    threads = [threading.Thread(target=record) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    status = store.status("b1")
    assert (
        status is not None and status.counts.succeeded == 1 and status.state is BatchState.COMPLETED
    )


def test_unknown_batch_and_item(store: ReportStore) -> None:
    assert store.status("nope") is None
    assert store.item("nope", 0) is None
    _create(store)
    record = ItemRecord(7, 9, "n7").with_outcome(Outcome(ItemStatus.SUCCEEDED), finished_at=1.0)
    assert store.record_outcome("b1", record) is False


def test_items_page_in_order_and_round_trip(store: ReportStore) -> None:
    _create(store, total=25)
    record = ItemRecord(4, 6, "n4").with_outcome(
        Outcome(ItemStatus.FAILED, http_status=404, attempts=1, error="not found", sent={"a": 1}),
        finished_at=12.5,
    )
    store.record_outcome("b1", record)
    assert [r.index for r in store.items("b1", 10, 5)] == [10, 11, 12, 13, 14]
    assert store.items("b1", 24, 10)[-1].index == 24
    assert store.items("b1", 30, 10) == []
    assert store.item("b1", 4) == record
    failed = list(iter_items(store, "b1", 25, page=4, only=frozenset({ItemStatus.FAILED})))
    assert failed == [record]
    assert len(list(iter_items(store, "b1", 25, page=4))) == 25


def test_list_is_newest_first(store: ReportStore) -> None:
    for n in range(3):
        _create(store, batch_id=f"b{n}", total=1)
    assert [b.batch_id for b in store.list_batches()] == ["b2", "b1", "b0"]
    assert [b.batch_id for b in store.list_batches(offset=1, limit=1)] == ["b1"]


def test_redis_reports_expire_after_the_retention(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=1000)
    _create(store)
    assert 990 < redis_client.ttl(batch_key("b1")) <= 1000
    assert 990 < redis_client.ttl(items_key("b1")) <= 1000
    redis_client.delete(batch_key("b1"), items_key("b1"))  # as expiry would
    assert store.list_batches() == []
    assert redis_client.zcard("phonebatch:batches") == 0  # the index forgets it too


def test_redis_status_reads_one_hash_whatever_the_size(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=1000)
    _create(store, total=20_000)
    before = redis_client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)
    status = store.status("b1")
    after = redis_client.info("commandstats")["cmdstat_hgetall"]["calls"]
    assert status is not None and status.counts.total == 20_000
    assert after - before == 1
    assert redis_client.hlen(batch_key("b1")) < 40  # counters and options, not items


def test_auth_failures_halt_the_batch_at_the_limit(store: ReportStore) -> None:
    _create(store)
    assert store.note_auth_failure("b1", "key refused", 3) is False
    assert store.note_auth_failure("b1", "key refused", 3) is False
    assert store.note_auth_failure("b1", "key refused", 3) is True
    assert store.note_auth_failure("b1", "other words", 3) is True
    status = store.status("b1")
    assert status is not None and status.halted_reason == "key refused"
    assert store.note_auth_failure("no-such-batch", "x", 1) is False


def test_claims_keep_one_run_per_item(store: ReportStore) -> None:
    _create(store)
    first = store.claim("b1", 0, 60, "run-a")
    assert first.claim is Claim.CLAIMED and first.busy_for == 0.0
    assert first.item == ItemRecord(0, 2, "n0")
    assert first.rules == SendRules()
    second = store.claim("b1", 0, 60, "run-b")
    assert second.claim is Claim.BUSY and 59 < second.busy_for <= 60
    assert second.item is None and second.rules is None
    assert store.claim("b1", 0, 60, "run-a").claim is Claim.RETAKEN  # the same run again
    store.release("b1", 0)
    assert store.claim("b1", 0, 60, "run-b").claim is Claim.CLAIMED
    assert store.claim("b1", 1, 0.01, "run-c").claim is Claim.CLAIMED
    time.sleep(0.02)
    assert store.claim("b1", 1, 60, "run-d").claim is Claim.RETAKEN  # an expired lease
    _outcome(store, 2, ItemStatus.SUCCEEDED)
    assert store.claim("b1", 2, 60, "run-e").claim is Claim.DONE
    assert store.claim("b1", 9, 60, "run-e").claim is Claim.MISSING
    assert store.claim("nope", 0, 60, "run-e").claim is Claim.MISSING


def test_a_claim_carries_the_batch_rules(store: ReportStore) -> None:
    batch = NewBatch(
        "b2", name="t", source="cli", total=1, mode=BatchMode.ROLLBACK, force=True,
        read_first=False,
    )  # fmt: skip
    store.create_batch(batch, [ItemSeed(0, row=5, number_id="n0")])
    store.halt("b2", "key refused")
    ticket = store.claim("b2", 0, 60, "run-a")
    assert ticket.claim is Claim.CLAIMED and ticket.item == ItemRecord(0, 5, "n0")
    assert ticket.rules == SendRules(BatchMode.ROLLBACK, True, False, "key refused")


def test_cancel_spares_items_in_flight_and_blocks_the_rest(store: ReportStore) -> None:
    _create(store, total=5)
    assert store.claim("b1", 0, 60, "in-flight").claim is Claim.CLAIMED
    _outcome(store, 1, ItemStatus.SUCCEEDED)
    status = store.cancel("b1")
    assert status is not None and status.state is BatchState.CANCELLED
    assert (status.counts.cancelled, status.counts.pending, status.counts.succeeded) == (3, 1, 1)
    assert _outcome(store, 0, ItemStatus.SUCCEEDED)  # the request in flight is recorded
    after = store.status("b1")
    assert after is not None and after.state is BatchState.CANCELLED
    assert (after.counts.pending, after.counts.succeeded, after.counts.cancelled) == (0, 2, 3)
    assert [r.status for r in store.items("b1")] == [
        ItemStatus.SUCCEEDED, ItemStatus.SUCCEEDED, ItemStatus.CANCELLED, ItemStatus.CANCELLED,
        ItemStatus.CANCELLED,
    ]  # fmt: skip
    assert store.cancel("nope") is None


def test_a_claim_in_a_cancelled_batch_cancels_the_item(store: ReportStore) -> None:
    _create(store, total=2)
    assert store.claim("b1", 0, 60, "late-run").claim is Claim.CLAIMED
    store.cancel("b1")  # item 1 swept; item 0 in flight
    store.release("b1", 0)  # its run handed it back instead of sending
    assert store.claim("b1", 0, 60, "later-run").claim is Claim.CANCELLED
    status = store.status("b1")
    assert status is not None and (status.counts.cancelled, status.counts.pending) == (2, 0)


def test_a_cancelled_items_body_is_not_kept(store: ReportStore) -> None:
    """Bodies may hold secrets (twilioAuthToken, ...): an item that will never be sent
    does not keep its body, whether the cancel swept it or a late claim found it."""
    _create(store, total=3)
    assert store.claim("b1", 0, 60, "in-flight").claim is Claim.CLAIMED
    store.cancel("b1")  # items 1 and 2 swept; item 0 in flight
    assert store.bodies("b1", [1, 2]) == {}
    assert set(store.bodies("b1", [0])) == {0}  # its run is sending it
    store.release("b1", 0)  # it handed the item back instead
    assert store.claim("b1", 0, 60, "later-run").claim is Claim.CANCELLED
    assert store.bodies("b1", [0, 1, 2]) == {}


def test_completed_batches_cannot_be_cancelled(store: ReportStore) -> None:
    _create(store, total=1)
    _outcome(store, 0, ItemStatus.SUCCEEDED)
    status = store.cancel("b1")
    assert status is not None and status.state is BatchState.COMPLETED


def test_bodies_are_kept_and_secrets_dropped_once_sent(store: ReportStore) -> None:
    seeds = [ItemSeed(0, 2, "n0", '{"provider":"twilio","twilioAuthToken":"s3"}')]
    store.create_batch(NewBatch("b1", "t", "cli", total=1), seeds)
    assert store.bodies("b1", [0, 5]) == {0: '{"provider":"twilio","twilioAuthToken":"s3"}'}
    current = store.item("b1", 0)
    assert current is not None
    done = current.with_outcome(Outcome(ItemStatus.FAILED), finished_at=1.0)
    store.record_outcome("b1", done, keep_body='{"provider":"twilio","twilioAuthToken":"***"}')
    assert "s3" not in store.bodies("b1", [0])[0]


def test_retries_are_linked_to_their_parent(store: ReportStore) -> None:
    _create(store, batch_id="parent")
    store.link_retry("parent", "child-1")
    store.link_retry("parent", "child-2")
    status = store.status("parent")
    assert status is not None and status.retried_by == ("child-1", "child-2")


def test_a_selection_is_built_by_one_run_only(store: ReportStore) -> None:
    store.create_batch(NewBatch("sel", "t", "cli", total=0, selecting=True), [])
    assert store.begin_selection("sel") is True
    assert store.begin_selection("sel") is False  # a second delivery of the listing task
    status = store.add_items("sel", [ItemSeed(0, 1, "n0"), ItemSeed(1, 2, "n1")])
    assert status is not None and not status.selecting
    assert (status.counts.total, status.counts.pending) == (2, 2)
    assert store.begin_selection("sel") is False
    store.create_batch(NewBatch("empty", "t", "cli", total=0, selecting=True), [])
    assert store.begin_selection("empty")
    done = store.add_items("empty", [])
    assert done is not None and done.state is BatchState.COMPLETED


def test_expectations_travel_with_rollback_items(store: ReportStore) -> None:
    seeds = [ItemSeed(0, 2, "n0", '{"provider":"vapi","name":"a"}', '{"name":"b"}')]
    store.create_batch(NewBatch("rb", "t", "cli", total=1, mode=BatchMode.ROLLBACK), seeds)
    assert store.expectation("rb", 0) == {"name": "b"}
    assert store.expectation("rb", 1) is None
    status = store.status("rb")
    assert status is not None and status.mode is BatchMode.ROLLBACK


# --- pause, park, continue ------------------------------------------------------------------


def _queue(store: ReportStore, name: str) -> list[str]:
    """A queue's messages left to right (workers take from the right)."""
    if isinstance(store, MemoryReportStore):
        return store.queued(name)
    assert isinstance(store, RedisReportStore)
    return [m.decode() for m in store.client.lrange(name, 0, -1)]


def test_pause_holds_claims_and_continue_sends_the_parked_first(store: ReportStore) -> None:
    _create(store, total=4)
    assert store.claim("b1", 0, 60, "in-flight").claim is Claim.CLAIMED
    paused = store.pause("b1")
    assert paused is not None and paused.state is BatchState.PAUSED
    assert paused.paused_at is not None and store.state_of("b1") is BatchState.PAUSED
    assert store.claim("b1", 1, 60, "run-a").claim is Claim.PAUSED
    again = store.pause("b1")  # pausing a paused batch changes nothing
    assert again is not None and again.state is BatchState.PAUSED
    assert again.paused_at == paused.paused_at
    assert store.park("nope", "q", "waiting") is False  # no paused batch: onto the queue
    assert store.park("b1", "q", "m1") is True
    assert store.park("b1", "q", "m2") is True
    assert store.parked("b1") == ["m2", "m1"]
    assert _queue(store, "q") == ["waiting"]
    assert _outcome(store, 0, ItemStatus.SUCCEEDED)  # the request in flight lands
    held = store.status("b1")
    assert held is not None and held.state is BatchState.PAUSED
    assert (held.counts.succeeded, held.counts.pending) == (1, 3)

    answer = store.continue_batch("b1", "q")

    assert answer is not None
    went_on, status = answer
    assert went_on is True and status.state is BatchState.RUNNING and status.paused_at is None
    assert store.parked("b1") == []
    assert _queue(store, "q") == ["waiting", "m2", "m1"]  # at the front, m1 (parked first) next
    assert store.claim("b1", 1, 60, "run-b").claim is Claim.CLAIMED  # run-a held nothing
    not_paused = store.continue_batch("b1", "q")
    assert not_paused is not None and not_paused[0] is False
    assert not_paused[1].state is BatchState.RUNNING
    assert store.park("b1", "q", "late") is False  # a park after the continue: on the queue
    assert _queue(store, "q")[0] == "late" and store.parked("b1") == []


def test_a_pause_keeps_a_dead_runs_lapsed_claim(store: ReportStore) -> None:
    # A run that died holding item 0 may have sent it: after pause and continue, the next
    # run must still see that it retakes the item, not that it is the first.
    _create(store, total=2)
    assert store.claim("b1", 0, 0.01, "dead-run").claim is Claim.CLAIMED
    time.sleep(0.02)
    store.pause("b1")
    assert store.claim("b1", 0, 60, "parked-run").claim is Claim.PAUSED
    store.continue_batch("b1", "q")
    assert store.claim("b1", 0, 60, "next-run").claim is Claim.RETAKEN


def test_a_paused_batch_whose_last_item_lands_is_completed(store: ReportStore) -> None:
    _create(store, total=1)
    assert store.claim("b1", 0, 60, "in-flight").claim is Claim.CLAIMED
    store.pause("b1")
    assert _outcome(store, 0, ItemStatus.SUCCEEDED)
    done = store.status("b1")
    assert done is not None and done.state is BatchState.COMPLETED
    assert done.paused_at is None


def test_continue_puts_parked_tasks_back_on_the_workers_queue(store: ReportStore) -> None:
    # Whoever continues may run with another PHONEBATCH_QUEUE than the workers: the
    # parked tasks go back where they came from, not where the caller looks.
    _create(store, total=2)
    store.pause("b1")
    assert store.park("b1", "workers-q", "m1") is True
    answer = store.continue_batch("b1", "phonebatch")
    assert answer is not None and answer[0] is True
    assert _queue(store, "workers-q") == ["m1"]
    assert _queue(store, "phonebatch") == []


def test_a_batch_paused_before_it_started_continues_as_queued(store: ReportStore) -> None:
    _create(store)
    paused = store.pause("b1")
    assert paused is not None and paused.state is BatchState.PAUSED
    answer = store.continue_batch("b1", "q")
    assert answer is not None and answer[0] is True
    assert answer[1].state is BatchState.QUEUED and answer[1].started_at is None


def test_a_paused_claim_lets_go_of_its_own_claim_not_anothers(store: ReportStore) -> None:
    _create(store)
    assert store.claim("b1", 0, 60, "run-a").claim is Claim.CLAIMED
    assert store.claim("b1", 1, 60, "run-c").claim is Claim.CLAIMED
    store.pause("b1")
    assert store.claim("b1", 0, 60, "run-a").claim is Claim.PAUSED  # its own task, redelivered
    assert store.claim("b1", 1, 60, "run-d").claim is Claim.PAUSED
    store.continue_batch("b1", "q")
    assert store.claim("b1", 0, 60, "run-b").claim is Claim.CLAIMED
    assert store.claim("b1", 1, 60, "run-d").claim is Claim.BUSY  # run-c still sends it


def test_cancel_of_a_paused_batch_drops_the_parked_and_cancels_their_items(
    store: ReportStore,
) -> None:
    _create(store, total=4)
    assert store.claim("b1", 0, 60, "in-flight").claim is Claim.CLAIMED
    store.pause("b1")
    assert store.claim("b1", 1, 60, "run-a").claim is Claim.PAUSED
    assert store.park("b1", "q", "m1")

    status = store.cancel("b1")

    assert status is not None and status.state is BatchState.CANCELLED
    assert status.paused_at is None
    assert store.parked("b1") == []
    assert (status.counts.cancelled, status.counts.pending) == (3, 1)  # all but the one in flight
    assert _outcome(store, 0, ItemStatus.SUCCEEDED)
    final = store.status("b1")
    assert final is not None and final.state is BatchState.CANCELLED
    assert (final.counts.pending, final.counts.succeeded, final.counts.cancelled) == (0, 1, 3)
    assert store.park("b1", "q", "m2") is False  # a park that lost the race: back on the queue
    assert _queue(store, "q") == ["m2"]
    assert store.claim("b1", 1, 60, "run-b").claim is Claim.DONE  # where it finds it done
    after = store.continue_batch("b1", "q")
    assert after is not None and after[0] is False and after[1].state is BatchState.CANCELLED
    paused = store.pause("b1")
    assert paused is not None and paused.state is BatchState.CANCELLED


def test_the_last_outcome_completes_a_paused_batch(store: ReportStore) -> None:
    _create(store, total=2)
    store.claim("b1", 0, 60, "run-a")
    store.claim("b1", 1, 60, "run-b")
    store.pause("b1")
    _outcome(store, 0, ItemStatus.SUCCEEDED)
    _outcome(store, 1, ItemStatus.FAILED)
    status = store.status("b1")
    assert status is not None and status.state is BatchState.COMPLETED
    assert status.finished_at is not None
    done = store.pause("b1")
    assert done is not None and done.state is BatchState.COMPLETED
    answer = store.continue_batch("b1", "q")
    assert answer is not None and answer[0] is False


def test_pause_and_continue_of_no_batch(store: ReportStore) -> None:
    assert store.pause("nope") is None
    assert store.continue_batch("nope", "q") is None
    assert store.state_of("nope") is None
    assert store.parked("nope") == []


def test_redis_parked_messages_expire_with_the_batch(redis_client: redis.Redis) -> None:
    store = RedisReportStore(redis_client, retention_seconds=1000)
    _create(store)
    store.pause("b1")
    store.park("b1", "q", "m1")
    assert 990 < redis_client.ttl(parked_key("b1")) <= 1000
    assert store.state_of("b1") is BatchState.PAUSED


def test_a_paused_batch_is_never_taken_for_stalled(store: ReportStore) -> None:
    _create(store)
    later = time.time() + 3600  # long after its last claim or outcome
    running = store.status("b1")
    assert running is not None and is_quiet(running, later, quiet_after=60)
    paused = store.pause("b1")
    assert paused is not None and not is_quiet(paused, later, quiet_after=60)


def test_a_staged_batch_is_invisible_until_it_goes_live_in_one_step(store: ReportStore) -> None:
    seeds = [ItemSeed(i, row=i + 2, number_id=f"n{i}") for i in range(3)]
    store.create_batch(NewBatch("b1", name="t", source="cli", total=3), seeds, live=False)
    assert store.status("b1") is None and store.list_batches(0, 10) == []
    assert store.go_live("b1") is True
    status = store.status("b1")
    assert status is not None and status.state is BatchState.QUEUED
    assert status.counts.pending == 3 and [b.batch_id for b in store.list_batches(0, 10)] == ["b1"]
    assert store.go_live("b1") is False  # once


def test_a_discarded_submission_leaves_nothing(store: ReportStore) -> None:
    seeds = [ItemSeed(i, row=i + 2, number_id=f"n{i}") for i in range(3)]
    store.create_batch(NewBatch("b1", name="t", source="cli", total=3), seeds, live=False)
    store.discard("b1")
    assert store.go_live("b1") is False
    assert store.status("b1") is None and store.bodies("b1", [0, 1, 2]) == {}


def test_staged_keys_expire_within_the_hour_and_live_ones_keep_the_retention(
    redis_client: redis.Redis,
) -> None:
    store = RedisReportStore(redis_client, retention_seconds=86_400)
    seeds = [ItemSeed(i, row=i + 2, number_id=f"n{i}", body="{}") for i in range(3)]
    store.create_batch(NewBatch("b1", name="t", source="cli", total=3), seeds, live=False)
    keys = list(redis_client.scan_iter("phonebatch:{b1}:*"))
    assert keys and all(0 < redis_client.ttl(k) <= 3600 for k in keys)
    store.go_live("b1")
    assert all(redis_client.ttl(k) > 3600 for k in keys)
