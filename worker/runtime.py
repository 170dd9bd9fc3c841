"""What a worker process builds once and shares between its tasks (and threads)."""

from __future__ import annotations

import json
import random
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config import Settings
from jobs.queue.deferral import Deferrals
from jobs.queue.messages import UPDATE_TASK, task_message, update_args
from jobs.queue.priority import queue_key
from jobs.store.connection import client_for
from jobs.store.pace import LIMITERS_KEY, limiter_key
from jobs.store.redis_store import RedisReportStore
from worker.delivery import WorkItem
from worker.limiter import Limiter, Pace
from worker.limiter_redis import RedisInFlightCap, RedisLimiterBackend
from worker.retry import Attempts, Deferred, RetryingSender, RetryPolicy
from worker.vapi import VapiApi, build_api


@dataclass(frozen=True)
class Runtime:
    """A worker process's shared parts: API client, store, sender, deferrals, settings."""

    settings: Settings
    api: VapiApi
    store: RedisReportStore
    sender: RetryingSender
    deferrals: Deferrals
    limiter_key: str = ""  # the shared pace's key: per API and key, never the key

    def defer_task(
        self, task_name: str, args: list[Any], delay: float, argsrepr: str, priority: int
    ) -> None:
        """Run this task again in `delay` seconds (without holding a worker meanwhile), at
        the kombu `priority` it ran with."""
        message = task_message(
            task_name=task_name,
            task_id=str(uuid.uuid4()),
            args_json=json.dumps(args, separators=(",", ":")),
            queue=self.settings.queue,
            origin=f"phonebatch-worker@{socket.gethostname()}",
            argsrepr=argsrepr,
            priority=priority,
        )
        self.deferrals.defer(message, delay)

    def hand_back(self, item: WorkItem, deferred: Deferred, priority: int) -> None:
        """Put the item back on the queue in `deferred.delay` seconds, counts and
        priority kept."""
        message = self._item_message(item, deferred.attempts, priority)
        # A little jitter so items handed back together do not return together.
        self.deferrals.defer(message, deferred.delay * random.uniform(1.0, 1.1))  # noqa: S311

    def park(self, item: WorkItem, attempts: Attempts, priority: int) -> None:
        """Keep a paused batch's item (a task message, counts kept) until the batch
        continues; straight back on the queue (its priority's key) if it already has."""
        message = self._item_message(item, attempts, priority)
        self.store.park(item.batch_id, queue_key(self.settings.queue, priority), message)

    def _item_message(self, item: WorkItem, attempts: Attempts, priority: int) -> str:
        """The update task of this item, carrying its attempts so far."""
        args = update_args(
            item.batch_id, item.index, item.row, item.number_id,
            json.dumps(item.body, separators=(",", ":")),
        )  # fmt: skip
        return task_message(
            task_name=UPDATE_TASK,
            task_id=str(uuid.uuid4()),
            args_json=args,
            kwargs_json=json.dumps(item_kwargs(item, attempts)),
            queue=self.settings.queue,
            origin=f"phonebatch-worker@{socket.gethostname()}",
            argsrepr=f"(batch={item.batch_id}, row={item.row}, id={item.number_id})",
            priority=priority,
        )


def item_kwargs(item: WorkItem, attempts: Attempts) -> dict[str, Any]:
    """An item's task keywords: its attempts, and its read from a listing if it has one."""
    kwargs: dict[str, Any] = {"attempts": attempts.as_dict()}
    if item.read is not None:
        kwargs["read"] = item.read.as_json()
    return kwargs


def pace(settings: Settings) -> Pace:
    """PHONEBATCH_RATE_LIMIT: unset, learn the pace; 0, no pace; N, learn it under N."""
    limit = settings.rate_limit
    if limit == 0:
        return Pace(unlimited=True)
    ceiling = 0.0 if limit is None else limit * settings.rate_headroom
    return Pace(ceiling=ceiling, start=settings.rate_start)


def resilient_redis(settings: Settings) -> redis.Redis:
    """A client that rides out a Redis restart or a Sentinel failover (about 20 s of
    retries) instead of failing the task in the middle of recording an outcome.

    A write that reaches a primary just demoted to a replica is retried too: redis-py's
    Sentinel client turns READONLY into a lost connection and asks the sentinels again;
    on a plain URL (a failover behind one address) the READONLY error itself is retried."""
    return client_for(
        settings,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=15),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError],
        health_check_interval=10,
    )


def build_runtime(settings: Settings) -> Runtime:
    client = resilient_redis(settings)
    in_flight = None
    if settings.max_in_flight:
        # A place's lease outlives the longest request, so only a dead worker's expire.
        lease = settings.connect_timeout + settings.read_timeout + settings.write_timeout + 5
        in_flight = RedisInFlightCap(client, settings.max_in_flight, lease=lease).hold
    api = build_api(settings)
    secret = settings.vapi_api_key.get_secret_value() if settings.vapi_api_key else ""
    key = limiter_key(settings.vapi_base_url, secret)  # a fingerprint: never the key
    client.hset(LIMITERS_KEY, key, settings.vapi_base_url)  # for front ends to find it
    limiter = Limiter(
        RedisLimiterBackend(client, pace(settings), key), max_pause=settings.inline_wait_limit
    )
    return Runtime(
        settings=settings,
        api=api,
        store=RedisReportStore(client, retention_seconds=settings.retention_seconds),
        sender=RetryingSender(RetryPolicy.from_settings(settings), limiter, in_flight=in_flight),
        deferrals=Deferrals(client, settings.queue),
        limiter_key=key,
    )


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime(settings: Settings) -> Runtime:
    """This process's runtime, built on first use (after a prefork child has forked)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(settings)
        return _runtime
