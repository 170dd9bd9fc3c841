"""Celery beat for phonebatch's schedules: cron in each schedule's own time zone, and the
slot each run belongs to passed to the fire task (which fires each slot once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import BaseSchedule, schedstate

from config.schedules import Schedule
from jobs.queue.priority import Priority

FIRE_TASK = "phonebatch.fire_schedule"


class ZonedCron(BaseSchedule):
    """A cron schedule read in an IANA time zone, daylight saving included."""

    def __init__(self, schedule: Schedule, app: Celery | None = None) -> None:
        super().__init__(app=app)
        self.spec = schedule

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.spec.next_run(last_run_at) - datetime.now(UTC)

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = datetime.now(UTC)
        due_at = self.spec.next_run(last_run_at)
        if due_at <= now:
            following = self.spec.next_run(now)
            return schedstate(True, max(0.0, (following - now).total_seconds()))
        return schedstate(False, max(0.0, (due_at - now).total_seconds()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.spec,))

    def __repr__(self) -> str:
        return f"<ZonedCron {self.spec.cron} {self.spec.timezone}>"


class SlotScheduler(PersistentScheduler):
    """Tells each fire task which scheduled slot it is for: every beat computes the same
    slot, so the slot lock in Redis lets exactly one of them create the batch."""

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        if isinstance(entry.schedule, ZonedCron):
            slot = entry.schedule.spec.slot_at(datetime.now(UTC))
            entry.kwargs = {**(entry.kwargs or {}), "slot": slot.isoformat()}
        return super().apply_async(entry, producer, advance, **kwargs)


def beat_schedule(schedules: list[Schedule]) -> dict[str, dict[str, Any]]:
    # The fire task waits with normal work, even where beat sends it by name (kombu's
    # default priority, 0, is high's key); the batch it fires has the schedule's own.
    options = {"priority": Priority.NORMAL.level}
    return {
        s.name: {"task": FIRE_TASK, "schedule": ZonedCron(s), "args": [s.name], "options": options}
        for s in schedules
    }
