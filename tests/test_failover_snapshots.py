"""An item sent again after its outcome was lost (a failover that lost writes the old
primary had acknowledged, a killed worker) keeps the snapshot taken before its first send:
it is counted once, as succeeded, and a rollback puts back the true previous values.
On both stores."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis

from config import Settings
from jobs.store.interface import ItemRecord, ItemSeed, ItemStatus, NewBatch, Receipt, ReportStore
from jobs.store.memory_store import MemoryReportStore
from jobs.store.redis_store import RedisReportStore
from worker.delivery import WorkItem, deliver
from worker.limiter import Limiter, MemoryLimiterBackend, Pace
from worker.retry import Attempts, Deferred, RetryingSender, RetryPolicy
from worker.vapi import VapiApi, build_api

BODY = {"provider": "vapi", "assistantId": "asst_new", "name": "Moved"}
ITEM = WorkItem("b", 0, 2, "num-1", BODY)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> ReportStore:
    found: ReportStore
    if request.param == "memory":
        found = MemoryReportStore()
    else:
        found = RedisReportStore(request.getfixturevalue("redis_client"), retention_seconds=60)
    found.create_batch(NewBatch("b", "t", "cli", total=1), [ItemSeed(0, 2, "num-1", "{}")])
    return found


class _Number:
    """One number behind a scripted API: GET shows it, PATCH changes it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {"id": "num-1", "assistantId": "asst_old", "name": "Desk"}
        self.patches = 0

    def api(self) -> VapiApi:
        settings = Settings(vapi_api_key="k", vapi_base_url="http://vapi.test")
        return build_api(settings, transport=httpx.MockTransport(self.answer))

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            self.patches += 1
            self.values |= {k: v for k, v in json.loads(request.content).items() if k != "provider"}
        return httpx.Response(200, json=self.values)


class _LosesTheOutcome:
    """The store as a failover leaves it: the outcome's write never reached the new
    primary (nor did the claim), but the snapshot did (the worker waited for a replica)."""

    def __init__(self, store: ReportStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def record_outcome(
        self, batch_id: str, item: ItemRecord, keep_body: str | None = None,
        receipt: Receipt | None = None,
    ) -> bool:  # fmt: skip
        self._store.release(batch_id, item.index)
        raise redis.ConnectionError("the primary went away")


def _run(store: Any, number: _Number, owner: str) -> ItemRecord | None:
    limiter = Limiter(MemoryLimiterBackend(Pace(0)), max_pause=0, sleep=lambda _: None)
    sender = RetryingSender(RetryPolicy(max_attempts=1), limiter, sleep=lambda _: None)

    def never(item: WorkItem, _: Attempts | Deferred) -> None:
        raise AssertionError("nothing is handed back or parked here")

    return deliver(
        ITEM, api=number.api(), store=store, sender=sender, hand_back=never, park=never,
        owner=owner,
    )  # fmt: skip


def test_an_item_sent_again_after_its_outcome_was_lost_keeps_the_first_snapshot(
    store: ReportStore,
) -> None:
    number = _Number()
    with pytest.raises(redis.ConnectionError):
        _run(_LosesTheOutcome(store), number, "run-1")
    assert number.patches == 1 and number.values["assistantId"] == "asst_new"

    record = _run(store, number, "run-2")  # the task again, on the promoted replica

    assert record is not None and record.status is ItemStatus.SUCCEEDED
    assert record.extra["reason"] == "sent by an earlier run that stopped before recording it"
    assert record.extra["before"] == {"assistantId": "asst_old", "name": "Desk"}
    assert {c["field"]: c["before"] for c in record.extra["changes"]} == {
        "assistantId": "asst_old", "name": "Desk",
    }  # fmt: skip
    assert number.patches == 1  # already right: nothing sent again
    status = store.status("b")
    assert status is not None
    assert (status.counts.succeeded, status.counts.pending, status.counts.skipped) == (1, 0, 0)


def test_a_send_that_never_arrived_is_sent_again_with_the_first_snapshot(
    store: ReportStore,
) -> None:
    number = _Number()
    store.claim("b", 0, 60, "run-1")
    kept = store.keep_snapshot("b", 0, {"assistantId": "asst_old", "name": "Desk"})
    store.release("b", 0)  # the run died before its PATCH
    number.values["name"] = "Renamed meanwhile"  # somebody else, since

    record = _run(store, number, "run-2")

    assert record is not None and record.status is ItemStatus.SUCCEEDED
    assert number.patches == 1 and number.values["assistantId"] == "asst_new"
    assert record.extra["before"] == kept == {"assistantId": "asst_old", "name": "Desk"}


def test_the_first_snapshot_stays_and_the_claim_hands_it_over(store: ReportStore) -> None:
    assert store.claim("b", 0, 60, "run-1").snapshot is None
    first = store.keep_snapshot("b", 0, {"assistantId": "asst_old"})
    assert store.keep_snapshot("b", 0, {"assistantId": "asst_new"}) == first
    store.release("b", 0)
    assert store.claim("b", 0, 60, "run-2").snapshot == {"assistantId": "asst_old"}
