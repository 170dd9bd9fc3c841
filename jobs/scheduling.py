"""Fire a schedule: build its batch and submit it, once per scheduled slot.

Beat processes send a fire task for each due slot; the first task to take the slot's
lock in Redis creates the batch, so a slot fires once even when beat restarts or two
beats run by mistake.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import redis

from config.schedules import Schedule
from jobs.intake import Intake, read_batch, validate_records
from jobs.producer import BatchOptions, submit_batch
from jobs.sources import Defaults, InputError, RawRecord, detect_format
from jobs.store import BatchMode, ReportStore

SLOT_LOCK_TTL = 7 * 24 * 3600


def schedule_intake(schedule: Schedule, base_dir: Path) -> Intake:
    """The schedule's batch, validated whole like any other."""
    if schedule.file is not None:
        path = base_dir / schedule.file
        try:
            text = path.read_text("utf-8-sig")
        except FileNotFoundError:
            raise InputError(f"schedule {schedule.name!r}: no batch file {path}") from None
        return read_batch(
            io.StringIO(text, newline=""), detect_format(path.name), provider=schedule.provider
        )
    records: list[Defaults | RawRecord] = [Defaults(dict(schedule.set or {}))]
    records += [
        RawRecord(n, {"id": number_id}) for n, number_id in enumerate(schedule.ids or [], 1)
    ]
    return validate_records(records, provider=schedule.provider)


def take_slot(client: redis.Redis, name: str, slot: datetime) -> bool:
    """True for the first taker of this schedule's slot, False for every later one."""
    key = f"phonebatch:schedule:{name}:{slot.isoformat()}"
    return bool(client.set(key, "fired", nx=True, ex=SLOT_LOCK_TTL))


def fire(
    schedule: Schedule,
    *,
    base_dir: Path,
    store: ReportStore,
    broker: redis.Redis,
    queue: str,
    default_webhook: str | None = None,
    slot: datetime | None = None,
) -> str | None:
    """Submit the schedule's batch; None if this slot was fired already."""
    if slot is not None and not take_slot(broker, schedule.name, slot):
        return None
    intake = schedule_intake(schedule, base_dir)
    if not intake.ok:
        raise InputError(f"schedule {schedule.name!r}: {intake.errors[0]}")
    when = f" at {slot.isoformat()}" if slot else " (run by hand)"
    return submit_batch(
        intake.items,
        store=store,
        broker=broker,
        queue=queue,
        name=f"{schedule.name}{when}",
        source=f"schedule:{schedule.name}",
        webhook_url=schedule.webhook_url or default_webhook,
        options=BatchOptions(mode=BatchMode.DRY_RUN if schedule.dry_run else BatchMode.UPDATE),
    )
