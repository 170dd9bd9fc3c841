"""What a worker process builds once and shares between its tasks (and threads)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from config import Settings
from jobs.store_redis import RedisReportStore
from worker.delivery import SendPolicy, SingleAttempt
from worker.vapi import VapiApi, build_http_client


@dataclass(frozen=True)
class Runtime:
    api: VapiApi
    store: RedisReportStore
    policy: SendPolicy


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime(settings: Settings) -> Runtime:
    """This process's runtime, built on first use (after a prefork child has forked)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(
                api=VapiApi(build_http_client(settings)),
                store=RedisReportStore.from_url(
                    settings.redis_url, retention_seconds=settings.retention_seconds
                ),
                policy=SingleAttempt(),
            )
        return _runtime
