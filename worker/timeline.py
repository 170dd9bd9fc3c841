"""Counting one item's requests, 429s and errors as they happen, for its batch's timeline
(`jobs.store.timeline`): the sender counts into the item's tally (a context variable, so
the sender needs to know nothing of batches), and the task adds the tally to the batch's
time bucket once, when the item leaves its hands."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar

import redis

from jobs.store import timeline
from jobs.store.redis_store import RedisReportStore

_tally: ContextVar[Counter[str] | None] = ContextVar("phonebatch_tally", default=None)


def count(kind: str) -> None:
    """One more `kind` (requests, limited, errors) for the item in hand; outside a tally
    (a test calling the sender directly) nothing."""
    tally = _tally.get()
    if tally is not None:
        tally[kind] += 1


@contextlib.contextmanager
def tallied(store: RedisReportStore, batch_id: str) -> Iterator[None]:
    """Count what happens inside, then add it to the batch's timeline: one pipelined
    round trip, and none when nothing was sent. A Redis error here loses a chart point,
    never an item."""
    tally: Counter[str] = Counter()
    token = _tally.set(tally)
    try:
        yield
    finally:
        _tally.reset(token)
        with contextlib.suppress(redis.RedisError):
            timeline.add(store.client, batch_id, dict(tally), time.time(), store.retention_seconds)
