"""The Celery app: Redis broker, no result backend (the report store holds outcomes).

`celery -A worker.app worker` and `phonebatch worker` both load this module; it builds
the settings once, here at the worker's entry point.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from config import Settings, load_settings
from jobs.queue.keys import UNACKED_INDEX_KEY, UNACKED_KEY
from jobs.queue.priority import Priority
from jobs.store.connection import parse_sentinel_url, scheme_of
from worker.broker import stay_on_sentinels, transport_path


def create_app(settings: Settings) -> Celery:
    app = Celery("phonebatch", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        # What Celery publishes itself (a fire task beat sends) waits with normal work;
        # kombu's default, 0, is high's key (`jobs.queue.priority`).
        task_default_priority=Priority.NORMAL.level,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
        broker_transport_options={
            # Longer than any task can run (Settings checks), so a live task is never
            # delivered twice; a dead worker's tasks come back after it.
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
            # The restore sweep runs under a mutex in Redis; a worker killed while holding
            # it would block every sweep for kombu's default 300 s.
            "unacked_mutex_expire": max(5, min(60, settings.visibility_timeout // 4)),
            # Named where recovery and the record script read them (jobs.queue.keys).
            "unacked_key": UNACKED_KEY,
            "unacked_index_key": UNACKED_INDEX_KEY,
        },
    )
    scheme = scheme_of(settings.redis_url)
    if scheme == "sentinel":
        parse_sentinel_url(settings.redis_url)  # a URL read two ways fails here, at start
        app.conf.broker_transport_options.update(sentinel_options(settings))
        app.conf.broker_failover_strategy = stay_on_sentinels
    if scheme in ("redis", "sentinel"):
        # kombu's Redis transport, cheaper per task, when the installed kombu has what it
        # needs; on Sentinel, the same channel over kombu's Sentinel pool. Not for
        # rediss://: kombu turns TLS on by the transport's name.
        app.conf.broker_transport = transport_path(
            settings.broker_transport, sentinel=scheme == "sentinel"
        )
    app.conf.phonebatch_settings = settings
    return app


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """kombu's Sentinel transport options: the master's name (the store reads the same
    setting), and the sentinels' own password if they have one."""
    options: dict[str, Any] = {"master_name": settings.sentinel_master}
    if settings.sentinel_password is not None:
        options["sentinel_kwargs"] = {"password": settings.sentinel_password.get_secret_value()}
    return options


app = create_app(load_settings())
