"""The Redis transport the workers use: kombu's, with one change.

kombu builds a new `redis.Redis` for each message it delivers (to record it as
unacknowledged) and for each ack. Building one copies redis-py's table of response
callbacks, some 200 entries: measured with py-spy, about a third of a worker's CPU per
task went there. A `redis.Redis` is thread-safe (each command takes a connection from
the pool), so one per channel pool does the same work. A new pool (kombu makes one
after a reconnect) gets a new client.
"""

from __future__ import annotations

import threading
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client: tuple[Any, Any] | None = None
    _sync_lock = threading.Lock()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool
        cached = self._sync_client
        if cached is not None and cached[0] is pool:
            return cached[1]
        with self._sync_lock:
            client = super()._create_client()  # type: ignore[misc]
            self._sync_client = (pool, client)
            return client


class Transport(kombu_redis.Transport):
    Channel = Channel
