"""Undo a batch: a new batch putting back what it overwrote, field by field.

For each number the batch changed, the rollback restores the previous values of only
the fields that batch touched (kept in the item's record as `before`). The values the
batch set travel along as expectations: a number that no longer holds them was changed
by someone since, and the rollback leaves it alone unless forced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from jobs.batch.models import UPDATE_MODELS, dump_body
from jobs.batch.redaction import REDACTED
from jobs.batch.validation import BatchItem
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.queue.priority import Priority
from jobs.store.interface import BatchMode, ItemRecord, ItemStatus, ReportStore, iter_items
from jobs.store.redis_store import RedisReportStore


class NothingToRollBack(Exception):
    """Raised when the batch is unknown or changed nothing that can be put back."""


@dataclass
class RollbackPlan:
    """A rollback to submit: one item per number to restore, and what must be left out."""

    items: list[BatchItem] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # why some changes cannot be undone


def _redacted(value: Any) -> bool:
    return REDACTED in json.dumps(value)


def _restore(record: ItemRecord) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(values to put back, values the batch set, fields that cannot be put back)."""
    sent, before = record.sent or {}, record.extra.get("before") or {}
    touched = [f for f in sent if f != "provider"]
    restore = {f: before[f] for f in touched if f in before and not _redacted(before[f])}
    expect = {f: sent[f] for f in touched if not _redacted(sent[f])}
    return restore, expect, [f for f in touched if f not in restore]


def plan_rollback(store: ReportStore, batch_id: str) -> RollbackPlan:
    status = store.status(batch_id)
    if status is None:
        raise NothingToRollBack(f"no batch {batch_id!r}")
    plan = RollbackPlan()
    for record in iter_items(store, batch_id, status.counts.total):
        if record.status is not ItemStatus.SUCCEEDED or record.sent is None:
            continue
        if "before" not in record.extra:
            plan.left_out.append(f"row {record.row}: the batch did not read it first (--no-read)")
            continue
        restore, expect, lost = _restore(record)
        if lost:
            plan.left_out.append(
                f"row {record.row}: {', '.join(lost)} had no earlier value, or a secret one"
            )
        if not restore:
            continue
        provider = str(record.sent["provider"])
        try:
            body = dump_body(
                UPDATE_MODELS[provider].model_validate({"provider": provider, **restore})
            )
        except ValidationError as exc:
            plan.left_out.append(f"row {record.row}: its earlier values do not validate: {exc}")
            continue
        plan.items.append(
            BatchItem(record.row, record.number_id, json.dumps(body), json.dumps(expect))
        )
    if not plan.items:
        reasons = "; ".join(plan.left_out[:3])
        raise NothingToRollBack(
            f"batch {batch_id} changed nothing that can be put back"
            + (f" ({reasons})" if reasons else "")
        )
    return plan


def submit_rollback(
    store: RedisReportStore,
    queue: str,
    batch_id: str,
    *,
    force: bool,
    source: str | None = None,
    priority: Priority | None = None,
) -> tuple[str, RollbackPlan]:
    """Plan the rollback of `batch_id` and submit it; the new batch's id and the plan. It
    runs at `priority`, high unless given."""
    original = store.status(batch_id)
    if original is None:
        raise NothingToRollBack(f"no batch {batch_id!r}")
    plan = plan_rollback(store, batch_id)
    child = submit_batch(
        plan.items, store=store, broker=store.client, queue=queue,
        name=f"rollback of {original.name}", source=source or original.source,
        # Undoing a change comes before other work: a rollback goes high.
        options=BatchOptions(
            mode=BatchMode.ROLLBACK, force=force, rollback_of=batch_id,
            priority=priority or Priority.HIGH, guard=original.guard,
        ),
    )  # fmt: skip
    return child, plan
