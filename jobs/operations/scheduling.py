"""Fire a schedule: build its batch and submit it, once per scheduled slot.

Beat processes send a fire task for each due slot; the first task to take the slot's
lock in Redis creates the batch, so a slot fires once even when beat restarts or two
beats run by mistake.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import redis
from redis.typing import EncodableT, FieldT

from config.schedules import Schedule
from jobs.batch.intake import Intake, read_batch, validate_records
from jobs.batch.sources import Defaults, InputError, RawRecord, detect_format
from jobs.operations.destinations import Destinations, webhook_problem
from jobs.operations.options import Choices, OptionError, batch_options
from jobs.operations.producer import BatchOptions, Overlap, submit_batch
from jobs.store.guardrails import GuardRule
from jobs.store.interface import ReportStore
from jobs.store.records import as_text

SLOT_LOCK_TTL = 7 * 24 * 3600
DEFAULT_GUARD = GuardRule()


def schedule_intake(schedule: Schedule, base_dir: Path) -> Intake:
    """The schedule's batch, validated whole like any other."""
    if schedule.file is not None:
        path = base_dir / schedule.file
        try:
            text = path.read_text("utf-8-sig", errors="surrogateescape")  # bad bytes: per row
        except FileNotFoundError:
            raise InputError(f"schedule {schedule.name!r}: no batch file {path}") from None
        except OSError as exc:
            reason = exc.strerror or "error"
            raise InputError(
                f"schedule {schedule.name!r}: {path} cannot be read ({reason})"
            ) from None
        return read_batch(
            io.StringIO(text, newline=""), detect_format(path.name), provider=schedule.provider
        )
    records: list[Defaults | RawRecord] = [Defaults(dict(schedule.set or {}))]
    records += [
        RawRecord(n, {"id": number_id}) for n, number_id in enumerate(schedule.ids or [], 1)
    ]
    return validate_records(records, provider=schedule.provider)


def slot_key(name: str, slot: datetime) -> str:
    # The wall-clock time, not its UTC offset: on the night clocks go back, 01:30 comes
    # twice and fires once.
    return f"phonebatch:schedule:{name}:{slot.replace(tzinfo=None).isoformat()}"


def take_slot(client: redis.Redis, name: str, slot: datetime) -> bool:
    """True for the first taker of this schedule's slot, False for every later one."""
    return bool(client.set(slot_key(name, slot), "fired", nx=True, ex=SLOT_LOCK_TTL))


def fire(
    schedule: Schedule,
    *,
    base_dir: Path,
    store: ReportStore,
    broker: redis.Redis,
    queue: str,
    default_webhook: str | None = None,
    slot: datetime | None = None,
    rules: Destinations | None = None,
    guard: GuardRule = DEFAULT_GUARD,
) -> str | None:
    """Submit the schedule's batch; None if this slot was fired already. Its webhook URL
    is held to `rules` (the settings' `destinations`; by default https only, no internal
    address); `guard` is the failure guard unless the schedule says otherwise."""
    intake = schedule_intake(schedule, base_dir)  # validated before the slot is taken
    try:
        options = batch_options(schedule_choices(schedule), guard)
    except OptionError as exc:
        raise InputError(f"schedule {schedule.name!r}: {exc}") from None
    if not intake.ok:
        raise InputError(f"schedule {schedule.name!r}: {intake.errors[0]}")
    url = schedule.webhook_url or default_webhook
    if (problem := webhook_problem(url, rules or Destinations())) is not None:
        raise InputError(f"schedule {schedule.name!r}: {problem}")
    if slot is not None and not take_slot(broker, schedule.name, slot):
        return None
    when = f" at {slot.isoformat()}" if slot else " (run by hand)"
    try:
        batch_id = _submit(schedule, intake, when, store, broker, queue, default_webhook, options)
    except Overlap as exc:
        # Another batch is changing some of its numbers: this slot fires as skipped (a
        # later try would only be later), and says why.
        note_fire(broker, schedule.name, slot, outcome="skipped", reason=str(exc))
        raise
    except Exception:
        if slot is not None:  # the slot did not fire: let a later try have it
            broker.delete(slot_key(schedule.name, slot))
        raise
    note_fire(broker, schedule.name, slot, outcome="fired", batch_id=batch_id)
    return batch_id


def last_fire_key(name: str) -> str:
    return f"phonebatch:schedule-last:{name}"  # beside, not among, the slot keys


def note_fire(
    client: redis.Redis, name: str, slot: datetime | None, *, outcome: str,
    batch_id: str = "", reason: str = "",
) -> None:  # fmt: skip
    """What the schedule's last firing did (`fired` a batch, or `skipped` and why), for
    `phonebatch schedules list`."""
    fields: dict[FieldT, EncodableT] = {
        "outcome": outcome, "batch_id": batch_id, "reason": reason,
        "slot": slot.isoformat() if slot else "", "at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    pipe = client.pipeline(transaction=True)
    pipe.delete(last_fire_key(name))
    pipe.hset(last_fire_key(name), mapping=fields)
    pipe.expire(last_fire_key(name), SLOT_LOCK_TTL)
    pipe.execute()


def last_fire(client: redis.Redis, name: str) -> dict[str, str]:
    """The schedule's last firing as `note_fire` kept it ({} if none is known)."""
    raw = client.hgetall(last_fire_key(name))
    return {as_text(k): as_text(v) for k, v in raw.items()}


def _submit(
    schedule: Schedule,
    intake: Intake,
    when: str,
    store: ReportStore,
    broker: redis.Redis,
    queue: str,
    default_webhook: str | None,
    options: BatchOptions,
) -> str:
    return submit_batch(
        intake.items,
        store=store,
        broker=broker,
        queue=queue,
        name=f"{schedule.name}{when}",
        source=f"schedule:{schedule.name}",
        webhook_url=schedule.webhook_url or default_webhook,
        options=options,
    )


def schedule_choices(schedule: Schedule) -> Choices:
    """A schedule's batch options, as its fields give them."""
    return Choices(
        dry_run=schedule.dry_run, priority=schedule.priority, canary=schedule.canary,
        guard=schedule.guard, guard_threshold=schedule.guard_threshold,
        guard_window=schedule.guard_window, allow_overlap=schedule.allow_overlap,
    )  # fmt: skip
