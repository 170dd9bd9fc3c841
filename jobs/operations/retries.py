"""A new batch made of a batch's failed items (CLI and HTTP API alike)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from jobs.batch.redaction import REDACTED
from jobs.batch.validation import BatchItem
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.queue.priority import Priority
from jobs.store.interface import ItemRecord, ItemStatus, iter_items
from jobs.store.redis_store import RedisReportStore


class NothingToRetry(Exception):
    """The batch has no failed item that can be sent again (or its bodies expired)."""


@dataclass(frozen=True)
class RetryBatch:
    """The retry batch made: its id, how many items it holds, which rows it left out."""

    batch_id: str
    count: int
    rows_without_secrets: list[int]  # failed rows left out: their secrets are not kept


def retry_failed(
    store: RedisReportStore, queue: str, batch_id: str, priority: Priority | None = None
) -> RetryBatch:
    """A new batch of `batch_id`'s failed items, linked to it both ways; items whose
    secret fields are no longer kept are left out (listed by row). It runs at `priority`,
    the parent's unless given."""
    parent = store.status(batch_id)
    if parent is None:
        raise NothingToRetry(f"no batch {batch_id!r}")
    kept, left_out, bodies = _retryable(store, batch_id, parent.counts.total)
    # A retry is the same kind of batch as its parent: a dry run stays a dry run, and a
    # rollback keeps checking that nobody changed a number since.
    expected = {r.index: store.expectation(batch_id, r.index) for r in kept}
    items = [
        BatchItem(
            r.row, r.number_id, bodies[r.index],
            json.dumps(expected[r.index]) if expected[r.index] is not None else None,
        )
        for r in kept
    ]  # fmt: skip
    options = BatchOptions(
        mode=parent.mode, force=parent.force, read_first=parent.read_first,
        rollback_of=parent.rollback_of, priority=priority or parent.priority,
        guard=parent.guard, allow_overlap=parent.allow_overlap,
    )  # fmt: skip
    child = submit_batch(
        items, store=store, broker=store.client, queue=queue, name=f"retry of {parent.name}",
        source=parent.source, parent_id=batch_id,
        webhook_url=parent.webhook.url if parent.webhook else None, options=options,
    )  # fmt: skip
    return RetryBatch(child, len(kept), [r.row for r in left_out])


def _retryable(
    store: RedisReportStore, batch_id: str, total: int
) -> tuple[list[ItemRecord], list[ItemRecord], dict[int, str]]:
    """The failed items that can be sent again, those that cannot (their secrets are not
    kept once sent: they must come from the file), and the bodies of all of them."""
    failed = [
        record
        for record in iter_items(store, batch_id, total)
        if record.status is ItemStatus.FAILED
    ]
    if not failed:
        raise NothingToRetry(f"batch {batch_id} has no failed items to retry")
    bodies = store.bodies(batch_id, [r.index for r in failed])
    if len(bodies) < len(failed):
        raise NothingToRetry(f"the request bodies of batch {batch_id} are gone (expired?)")
    left_out = [r for r in failed if f'"{REDACTED}"' in bodies[r.index]]
    skipped = {r.index for r in left_out}
    kept = [r for r in failed if r.index not in skipped]
    if not kept:
        rows = ", ".join(str(r.row) for r in left_out[:20])
        raise NothingToRetry(
            "every failed item carried secret fields, which are not kept once sent: "
            f"submit them again from your file (rows {rows})"
        )
    return kept, left_out, bodies
