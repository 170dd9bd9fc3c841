"""The worker's tasks, all thin: update one number (`worker.delivery`), build a selector
batch (`worker.selector`), fire a schedule's slot (`jobs.operations.scheduling`)."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject
from celery.signals import setup_logging, worker_init, worker_ready, worker_shutdown
from celery.utils.log import get_task_logger
from prometheus_client import start_http_server

from config import Settings
from config.schedules import find, load_schedules
from jobs.batch.reads import Read
from jobs.operations.destinations import destinations
from jobs.operations.options import default_guard
from jobs.operations.producer import Overlap
from jobs.operations.scheduling import fire
from jobs.queue.deferral import Deferrals
from jobs.queue.messages import READ_TASK, SELECT_TASK, UPDATE_TASK
from jobs.queue.priority import Priority
from jobs.store.interface import ItemRecord
from jobs.store.redis_store import RedisReportStore
from worker.app import app
from worker.beat import FIRE_TASK
from worker.broker import receipt_for
from worker.delivery import WorkItem, deliver
from worker.errors import DeliveryError
from worker.heartbeat import HEARTBEAT
from worker.logs import about_item, configure
from worker.pump import Pump, deferral_pump
from worker.reader import Progress, Reader, account_size_key
from worker.retry import Attempts, Deferred
from worker.runtime import Runtime, get_runtime, resilient_redis
from worker.selector import build_selection
from worker.sweeps import recovery_pumps
from worker.timeline import UNWRITTEN, tallied, timeline_pump
from worker.webhook_pump import webhook_pump

log = get_task_logger(__name__)
_pumps: list[Pump] = []
_stores: list[RedisReportStore] = []  # the pumps' store


def _settings() -> Settings:
    settings: Settings = app.conf.phonebatch_settings
    return settings


@setup_logging.connect
def _logging(loglevel: str | int | None = None, **_: Any) -> None:
    # Connected, so Celery leaves logging to us: JSON lines naming the item.
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or "INFO")
    configure(str(level), _settings().log_format)


@worker_init.connect
def _check_configuration(**_: Any) -> None:
    # Fail at start, not on the first number: a worker without a key can do nothing.
    if _settings().vapi_api_key is None:
        raise SystemExit("phonebatch worker: VAPI_API_KEY is not set; workers need it")


@worker_ready.connect
def _start_pumps(**_: Any) -> None:
    settings = _settings()
    client = resilient_redis(settings)
    store = RedisReportStore(client, retention_seconds=settings.retention_seconds)
    pumps = [*recovery_pumps(settings, store), deferral_pump(Deferrals(client, settings.queue))]
    pumps.append(timeline_pump(store))
    _stores.append(store)
    if settings.webhook_secret:
        secret = settings.webhook_secret.get_secret_value()
        pumps.append(webhook_pump(store, secret, destinations(settings)))
    else:
        # Webhooks are signed: a worker without the secret leaves them to one that has it.
        log.info("PHONEBATCH_WEBHOOK_SECRET is not set: this worker sends no webhooks")
    for pump in pumps:
        pump.start()
        _pumps.append(pump)
    if settings.metrics_port:
        # Serves /metrics from a daemon thread; this host only unless the settings say.
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        log.info("metrics on %s:%d", settings.metrics_host, settings.metrics_port)


@worker_shutdown.connect
def _stop_pumps(**_: Any) -> None:
    for pump in _pumps:
        if pump.name != HEARTBEAT:  # beats until the process ends: its tasks are running
            pump.stop()
    for store in _stores:  # the timeline's last second, written before the process ends
        UNWRITTEN.write(store)


@app.task(name=UPDATE_TASK, ignore_result=True, acks_late=True, bind=True)
def update_phone_number(
    self: Task[Any, None],
    batch_id: str,
    index: int,
    row: int,
    number_id: str,
    body: dict[str, Any],
    attempts: dict[str, int] | None = None,
    read: dict[str, Any] | None = None,
) -> None:
    runtime = get_runtime(_settings())
    item = WorkItem(
        batch_id, index, row, number_id, body, Attempts.from_dict(attempts), Read.from_json(read)
    )
    try:
        with about_item(batch_id, row, number_id), tallied(batch_id):
            _deliver(runtime, item, str(self.request.id), level_of_task(self))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Redis stayed away past the client's retries: the item must stay queued. Give
        # our claim back if we can, and have the broker put the message back; if Redis
        # cannot take even that, the message waits in `unacked` for the visibility
        # timeout, which outlasts the claim.
        log.warning("batch %s row %s: Redis unavailable (%s); requeued", batch_id, row, exc)
        with contextlib.suppress(redis.RedisError):
            runtime.store.release(batch_id, index)
        raise Reject(str(exc), requeue=True) from exc


def level_of_task(task: Task[Any, Any]) -> int:
    """The kombu priority the running task's message carries (Celery copies it from the
    message's properties), normal's if it has none: a task it queues again keeps it."""
    value = (task.request.delivery_info or {}).get("priority")
    return value if isinstance(value, int) else Priority.NORMAL.level


def _deliver(runtime: Runtime, item: WorkItem, owner: str, level: int) -> ItemRecord | None:
    record = deliver(
        item,
        api=runtime.api,
        store=runtime.store,
        sender=runtime.sender,
        hand_back=partial(runtime.hand_back, priority=level),
        park=partial(runtime.park, priority=level),
        auth_failure_limit=runtime.settings.auth_failure_limit,
        lease=runtime.settings.claim_lease,
        owner=owner,
        receipt=receipt_for(owner),
        max_read_age=runtime.settings.read_max_age,
    )
    if record is not None:
        log.info(
            "batch %s row %s number %s: %s (HTTP %s, %s attempt(s))",
            item.batch_id, item.row, item.number_id, record.status, record.http_status,
            record.attempts,
        )  # fmt: skip
    return record


@app.task(name=READ_TASK, ignore_result=True, acks_late=True, bind=True)
def read_numbers(self: Task[Any, None], batch_id: str, *progress: Any) -> None:
    """Read one page of the listing for a batch and queue the items it showed."""
    runtime = get_runtime(_settings())
    level = level_of_task(self)
    settings = runtime.settings
    reader = Reader(
        api=runtime.api, sender=runtime.sender, store=runtime.store,
        client=runtime.store.client, queue=settings.queue, page_size=settings.list_page_size,
        account_key=account_size_key(runtime.limiter_key),
    )  # fmt: skip
    now = Progress.from_args(list(progress))
    try:
        step = reader.step(batch_id, now)
    except Deferred as deferred:  # the API asked for a long pause: list this page later
        runtime.defer_task(
            READ_TASK, [batch_id, *now.as_args()], deferred.delay, f"(batch={batch_id}, read)",
            level,
        )  # fmt: skip
        return
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("batch %s: Redis unavailable while listing (%s); requeued", batch_id, exc)
        raise Reject(str(exc), requeue=True) from exc
    except Exception as exc:  # a refused key, a bug: the items must still go, read by GET
        message = exc.message if isinstance(exc, DeliveryError) else repr(exc)
        log.warning("batch %s: listing failed (%s); reading by GET", batch_id, message)
        reader.queue_unread(batch_id)
        return
    if step is not None:
        following, delay = step
        runtime.defer_task(
            READ_TASK, [batch_id, *following.as_args()], delay, f"(batch={batch_id}, read)",
            level,
        )  # fmt: skip


@app.task(name=FIRE_TASK, ignore_result=True, acks_late=True)
def fire_schedule(name: str, slot: str | None = None) -> None:
    """Submit a schedule's batch for one slot (a no-op for a slot fired already)."""
    settings = _settings()
    moment = datetime.fromisoformat(slot) if slot else None
    if moment is not None:
        late = (datetime.now(moment.tzinfo) - moment).total_seconds()
        if late > settings.schedule_grace_seconds:
            # Beat was down past this slot: firing now could undo a later slot's change
            # (the day assistant after the night one). Skipped, loudly.
            log.warning("schedule %s: slot %s missed by %.0f s; not fired", name, slot, late)
            return
    path = Path(settings.schedules_path)
    schedule = find(load_schedules(path), name)
    store = get_runtime(settings).store
    try:
        batch_id = fire(
            schedule,
            base_dir=path.parent,
            store=store,
            broker=store.client,
            queue=settings.queue,
            default_webhook=settings.webhook_url,
            slot=moment,
            rules=destinations(settings),
            guard=default_guard(settings),
        )
    except Overlap as exc:
        log.warning("schedule %s: slot %s skipped: %s", name, slot, exc)
        return
    if batch_id is None:
        log.info("schedule %s: slot %s was fired already", name, slot)
    else:
        log.info("schedule %s: slot %s fired batch %s", name, slot, batch_id)


@app.task(name=SELECT_TASK, ignore_result=True, acks_late=True, bind=True)
def select_numbers(
    self: Task[Any, None], batch_id: str, conditions: dict[str, str], values: dict[str, str]
) -> None:
    """List the numbers, keep the matching ones, and queue them as the batch's items."""
    runtime = get_runtime(_settings())
    level = level_of_task(self)
    try:
        count = build_selection(
            batch_id, conditions, values, api=runtime.api, sender=runtime.sender,
            store=runtime.store, broker=runtime.store.client, queue=runtime.settings.queue,
            page_size=runtime.settings.list_page_size, priority=Priority.of_level(level),
        )  # fmt: skip
    except Deferred as deferred:
        # The API asked for a long pause: list again later, from the start.
        args: list[Any] = [batch_id, conditions, values]
        runtime.defer_task(SELECT_TASK, args, deferred.delay, f"(batch={batch_id}, select)", level)
        return
    except DeliveryError as exc:
        _end_selection(runtime, batch_id, f"the numbers could not be listed: {exc.message}")
        return
    except (redis.ConnectionError, redis.TimeoutError):
        raise  # Redis is back soon: the message stays unacknowledged and comes again
    except Exception as exc:  # a bug, or a listing like no other: never `selecting` forever
        log.exception("batch %s: the selection could not be built", batch_id)
        _end_selection(runtime, batch_id, f"the selection could not be built: {exc!r}"[:300])
        return
    log.info("batch %s: selected %d numbers", batch_id, count)


def _end_selection(runtime: Runtime, batch_id: str, reason: str) -> None:
    """A selection that cannot be built ends empty, saying why, unless a run built it."""
    if runtime.store.begin_selection(batch_id):
        runtime.store.halt(batch_id, reason)
        runtime.store.add_items(batch_id, [])
