"""The report store in process memory: same behaviour as Redis, for tests and dry runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import replace

from jobs.store import (
    BatchState,
    BatchStatus,
    Counts,
    ItemRecord,
    ItemSeed,
    ItemStatus,
    NewBatch,
)


class MemoryReportStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, BatchStatus] = {}
        self._items: dict[str, dict[int, ItemRecord]] = {}
        self._auth_failures: dict[str, int] = {}

    def create_batch(self, batch: NewBatch, items: Iterable[ItemSeed]) -> None:
        status = BatchStatus(
            batch_id=batch.batch_id,
            name=batch.name,
            source=batch.source,
            state=BatchState.QUEUED,
            counts=Counts(total=batch.total, pending=batch.total),
            created_at=time.time(),
            parent_id=batch.parent_id,
        )
        records = {s.index: ItemRecord(s.index, s.row, s.number_id) for s in items}
        with self._lock:
            self._batches[batch.batch_id] = status
            self._items[batch.batch_id] = records

    def status(self, batch_id: str) -> BatchStatus | None:
        with self._lock:
            return self._batches.get(batch_id)

    def record_outcome(self, batch_id: str, item: ItemRecord) -> bool:
        with self._lock:
            records = self._items.get(batch_id, {})
            current = records.get(item.index)
            if current is None or current.status is not ItemStatus.PENDING:
                return False
            records[item.index] = item
            self._batches[batch_id] = _counted(self._batches[batch_id], item.status)
            return True

    def note_auth_failure(self, batch_id: str, reason: str, limit: int) -> bool:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return False
            failures = self._auth_failures[batch_id] = self._auth_failures.get(batch_id, 0) + 1
            if batch.halted_reason is None and failures >= limit:
                batch = self._batches[batch_id] = replace(batch, halted_reason=reason)
            return batch.halted_reason is not None

    def item(self, batch_id: str, index: int) -> ItemRecord | None:
        with self._lock:
            return self._items.get(batch_id, {}).get(index)

    def items(self, batch_id: str, start: int = 0, limit: int = 500) -> list[ItemRecord]:
        with self._lock:
            records = self._items.get(batch_id, {})
            indexes = range(max(start, 0), max(start, 0) + max(limit, 0))
            return [records[i] for i in indexes if i in records]

    def list_batches(self, offset: int = 0, limit: int = 50) -> list[BatchStatus]:
        with self._lock:
            newest = sorted(self._batches.values(), key=lambda b: b.created_at, reverse=True)
            return newest[offset : offset + limit]


def _counted(batch: BatchStatus, status: ItemStatus) -> BatchStatus:
    """The batch after one item left `pending` for `status`."""
    now = time.time()
    counts = replace(batch.counts, pending=batch.counts.pending - 1)
    counts = replace(counts, **{status.value: getattr(counts, status.value) + 1})
    batch = replace(batch, counts=counts)
    if batch.state is BatchState.QUEUED:
        batch = replace(batch, state=BatchState.RUNNING, started_at=now)
    if counts.pending <= 0 and batch.state is BatchState.RUNNING:
        batch = replace(batch, state=BatchState.COMPLETED, finished_at=now)
    return batch
