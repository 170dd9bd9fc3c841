"""Counting one item's requests, 429s and errors as they happen, for its batch's timeline
(`jobs.store.timeline`).

The sender counts into the item's tally (a context variable, so the sender needs to know
nothing of batches); when the item leaves the task, its tally joins what this process has
not yet written; a pump writes that once a second, and once more as the worker stops. The
per-item path touches no Redis for it; a chart may lag a second behind.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar

import redis

from jobs.store import timeline
from jobs.store.redis_store import RedisReportStore
from worker.pump import Pump

_tally: ContextVar[Counter[str] | None] = ContextVar("phonebatch_tally", default=None)


class Unwritten:
    """This process's counts not yet in Redis, by batch, bucket and kind (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: timeline.Pending = {}

    def add(self, batch_id: str, counts: Counter[str], now: float) -> None:
        start = timeline.bucket_of(now)
        with self._lock:
            batch = self._pending.setdefault(batch_id, {})
            for kind, n in counts.items():
                batch[(start, kind)] = batch.get((start, kind), 0) + n

    def write(self, store: RedisReportStore) -> None:
        """Everything gathered so far, in one round trip; lost if Redis refuses it (a
        chart's points, never an item's outcome)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            with contextlib.suppress(redis.RedisError):
                timeline.add(store.client, pending, store.retention_seconds)


UNWRITTEN = Unwritten()


def count(kind: str) -> None:
    """One more `kind` (requests, limited, errors) for the item in hand; outside a tally
    (a test calling the sender directly) nothing."""
    tally = _tally.get()
    if tally is not None:
        tally[kind] += 1


@contextlib.contextmanager
def tallied(batch_id: str, unwritten: Unwritten = UNWRITTEN) -> Iterator[None]:
    """Count what happens inside for `batch_id`'s timeline."""
    tally: Counter[str] = Counter()
    token = _tally.set(tally)
    try:
        yield
    finally:
        _tally.reset(token)
        if tally:
            unwritten.add(batch_id, tally, time.time())


def timeline_pump(store: RedisReportStore, unwritten: Unwritten = UNWRITTEN) -> Pump:
    """Writes this process's counts once a second."""
    return Pump("phonebatch-timeline", lambda: unwritten.write(store), 1.0)
