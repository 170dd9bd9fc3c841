"""The sweeps every worker runs so that nothing waits for a human: dead processes'
messages back to the queue (`jobs.operations.reaping`) and the webhooks they were
delivering back to the outbox, stalled batches resumed (`jobs.operations.self_resume`).
Each runs in a daemon thread."""

from __future__ import annotations

import logging
from collections.abc import Collection

import redis

from config import Settings
from jobs.operations.reaping import reap
from jobs.operations.self_resume import resume_stalled
from jobs.queue.liveness import MISSED_BEATS
from jobs.store.redis_store import RedisReportStore
from worker.heartbeat import heartbeat_pump, process_id
from worker.pump import Pump

log = logging.getLogger(__name__)


def reaper_pump(client: redis.Redis, interval: float, queues: Collection[str]) -> Pump:
    """Every `interval` seconds, puts the messages of processes silent for `MISSED_BEATS`
    beats back on their queue."""
    lapse = interval * MISSED_BEATS

    def tick() -> None:
        try:
            reaped = reap(client, lapse, queues, me=process_id())
        except redis.RedisError as exc:
            log.warning("could not look for dead workers: %s", exc)
            return
        if reaped.restored:
            log.warning(
                "worker process(es) %s silent for %.0f s: %d task(s) put back on the queue",
                ", ".join(reaped.dead), lapse, reaped.restored,
            )  # fmt: skip
        elif reaped.dead:  # stopped (a deploy), or died holding nothing
            log.info("worker process(es) %s gone", ", ".join(reaped.dead))

    return Pump("phonebatch-reaper", tick, interval)


def webhook_sweep_pump(store: RedisReportStore, interval: float) -> Pump:
    """Every `interval` seconds, puts the webhooks that processes silent for `MISSED_BEATS`
    beats were delivering back in the outbox, for any worker to deliver. Every worker
    sweeps, with or without the webhook secret: a webhook goes back once however many do
    (one script), and only workers with the secret take it."""
    lapse = interval * MISSED_BEATS

    def tick() -> None:
        try:
            back = store.return_lapsed_webhooks(lapse)
        except redis.RedisError as exc:
            log.warning("could not look for webhooks of dead workers: %s", exc)
            return
        if back:
            log.warning(
                "webhook(s) of batch(es) %s were being delivered by a worker process silent "
                "for %.0f s: back in the outbox, to be delivered again",
                ", ".join(back), lapse,
            )  # fmt: skip

    return Pump("phonebatch-webhook-sweep", tick, interval)


def self_resume_pump(
    store: RedisReportStore, queue: str, *, quiet_after: float, stale_after: float
) -> Pump:
    """Every few seconds, resumes the batches of `queue` quiet for `quiet_after` seconds
    with no task left anywhere."""
    interval = max(1.0, min(10.0, quiet_after / 4))
    looked: dict[str, float] = {}

    def tick() -> None:
        try:
            done = resume_stalled(
                store, queue, quiet_after=quiet_after, stale_after=stale_after, hold=60,
                looked=looked,
            )  # fmt: skip
        except redis.RedisError as exc:
            log.warning("could not look for stalled batches: %s", exc)
            return
        for one in done:
            log.warning(
                "batch %s had stalled (%d items pending, no task left for them): resumed, "
                "%d task(s) put back, %d item(s) queued again",
                one.batch_id, one.pending, one.resumed.restored, one.resumed.reenqueued,
            )  # fmt: skip

    return Pump("phonebatch-self-resume", tick, interval)


def recovery_pumps(settings: Settings, store: RedisReportStore) -> list[Pump]:
    """This process's heartbeat, and the sweeps that look after the others."""
    interval = settings.heartbeat_interval
    pumps = [
        heartbeat_pump(store.client, interval),
        reaper_pump(store.client, interval, [settings.queue]),
        webhook_sweep_pump(store, interval),
    ]
    if settings.self_resume_after:
        quiet, stale = settings.self_resume_after, settings.claim_lease
        pumps.append(self_resume_pump(store, settings.queue, quiet_after=quiet, stale_after=stale))
    return pumps
