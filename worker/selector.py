"""Build a selector batch on a worker (only workers hold the API key): list every number,
keep those matching the conditions, and give them the batch's values."""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Any

import redis

from jobs.batch.intake import validate_records
from jobs.batch.reads import kept_read
from jobs.batch.selection import selected_records
from jobs.batch.validation import BatchItem
from jobs.operations.producer import Overlap, enqueue_items, numbers_of, seeds_of
from jobs.queue.priority import Priority
from jobs.store.interface import BatchMode, ReportStore
from worker.delivery import Sender
from worker.retry import Attempts
from worker.vapi import VapiApi

log = logging.getLogger(__name__)


def list_all(api: VapiApi, sender: Sender, page_size: int) -> list[dict[str, Any]]:
    """Every number, a page at a time. The listing has no cursor: each next page asks for
    numbers created at or before the oldest one seen (ties are read twice, kept once)."""
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        result, _ = sender.run(partial(api.list_phone_numbers, page_size, cursor), Attempts())
        page = [n for n in (result.payload or []) if isinstance(n, dict) and "id" in n]
        new = [n for n in page if n["id"] not in found]
        found.update((n["id"], n) for n in new)
        if len(page) < page_size or not new:
            return list(found.values())
        cursor = min(str(n.get("createdAt", "")) for n in page)


def build_selection(
    batch_id: str,
    conditions: dict[str, str],
    values: dict[str, str],
    *,
    api: VapiApi,
    sender: Sender,
    store: ReportStore,
    broker: redis.Redis,
    queue: str,
    page_size: int,
    priority: Priority = Priority.NORMAL,
) -> int:
    """Add the matching numbers to the batch and queue them (at the batch's `priority`);
    returns how many."""
    read_at = time.time()  # when the listing began: its reads are at least this fresh
    numbers = list_all(api, sender, page_size)
    records = selected_records(numbers, conditions)
    if not store.begin_selection(batch_id):
        log.info("batch %s: another run built this selection; nothing more to do", batch_id)
        return 0
    if not records:
        store.add_items(batch_id, [])  # nothing matched: the batch is complete, empty
        return 0
    intake = validate_records(records, overrides=values)
    if not intake.ok:
        store.halt(batch_id, f"the selection could not be built: {intake.errors[0]}")
        store.add_items(batch_id, [])
        return 0
    if (refused := _hold(store, batch_id, intake.items)) is not None:
        store.halt(batch_id, refused)
        store.add_items(batch_id, [])
        return 0
    store.add_items(batch_id, list(seeds_of(intake.items)))
    # The listing is each number's read: its task sends from it, no GET.
    listed = {str(n["id"]): n for n in numbers}
    reads = [
        kept_read(listed.get(item.number_id, {}), json.loads(item.body), read_at)
        for item in intake.items
    ]
    enqueue_items(broker, queue, batch_id, intake.items, reads=reads, priority=priority)
    log.info("batch %s: %d of %d numbers selected", batch_id, len(intake.items), len(numbers))
    return len(intake.items)


def _hold(store: ReportStore, batch_id: str, items: list[BatchItem]) -> str | None:
    """Hold the selected numbers as a submit does (`submit_batch`); why the selection is
    refused if other batches hold some of them, else None."""
    status = store.status(batch_id)
    if status is None or status.mode is BatchMode.DRY_RUN:
        return None
    held = store.hold(batch_id, numbers_of(items), share=status.allow_overlap)
    if not held or status.allow_overlap:
        return None
    listed = ", ".join(f"{number} (batch {holder})" for number, holder in held[:10])
    more = f" and {len(held) - 10} more" if len(held) > 10 else ""
    return f"not sent: {Overlap(held)}: {listed}{more}"
