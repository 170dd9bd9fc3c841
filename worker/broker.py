"""The Redis transport the workers use: kombu's, with two changes.

1. kombu builds a new `redis.Redis` for each message it delivers (to record it as
   unacknowledged) and for each ack. Building one copies redis-py's table of response
   callbacks, some 200 entries: measured with py-spy, about a third of a worker's CPU per
   task went there. A `redis.Redis` is thread-safe (each command takes a connection from
   the pool), so one per channel pool does the same work. A new pool (kombu makes one
   after a reconnect) gets a new client.
2. An update task's message is settled in the report store's record script (the ZREM
   and HDEL of its `unacked` entry that kombu's ack would send, in the same atomic step
   as the outcome), through a `Receipt` the task looks up by its id. kombu's ack of a
   settled message then only forgets it locally: one Redis round trip less per task,
   and one less in the consumer's thread, which every message of the process goes
   through. Any message whose task did not record (a hand-back, a cancelled item,
   another task) is acked by kombu as before.
3. A delivered message is noted as unacked by one script (ZADD and HSET, as kombu's
   MULTI/EXEC pipeline does), about half the client CPU, in the consumer's thread too.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps
from redis.commands.core import Script

from jobs.store import Receipt

# Task id -> the receipt of the message that task is running from. Filled in kombu's
# consumer thread before the task starts, read in the pool's thread that runs it.
_by_task: dict[str, Receipt] = {}

# KEYS: unacked index, unacked hash. ARGV: delivery time, delivery tag, entry.
# Given as bytes, a script needs no client for its sha; each call names its client.
_NOTE_UNACKED = Script(
    None,  # type: ignore[arg-type]
    b"""
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
""",
)


def receipt_for(task_id: str) -> Receipt | None:
    """The broker entry of the message the task `task_id` is running from, if any."""
    return _by_task.get(task_id)


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receipts: dict[str, tuple[str, Receipt]] = {}

    def append(self, message: Any, delivery_tag: str) -> None:
        prefix = getattr(self.channel, "global_keyprefix", "") or ""
        if prefix:
            super().append(message, delivery_tag)  # kombu's client adds the prefix
        else:
            delivery = message.delivery_info
            entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            with self.channel.conn_or_acquire() as client:  # type: ignore[attr-defined]
                _NOTE_UNACKED(
                    keys=[self.unacked_index_key, self.unacked_key],
                    args=[time.time(), delivery_tag, entry],
                    client=client,
                )
            virtual.QoS.append(self, message, delivery_tag)
        task_id = (message.headers or {}).get("id")
        if isinstance(task_id, str):
            receipt = Receipt(
                prefix + self.unacked_index_key, prefix + self.unacked_key, delivery_tag
            )
            self._receipts[delivery_tag] = (task_id, receipt)
            _by_task[task_id] = receipt

    def ack(self, delivery_tag: str) -> None:
        receipt = self._forget(delivery_tag)
        if receipt is not None and receipt.settled:
            virtual.QoS.ack(self, delivery_tag)  # Redis has no entry left to remove
        else:
            super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        # A settled message has no entry to put back: kombu's restore finds none.
        self._forget(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)

    def _forget(self, delivery_tag: str) -> Receipt | None:
        found = self._receipts.pop(delivery_tag, None)
        if found is None:
            return None
        task_id, receipt = found
        if _by_task.get(task_id) is receipt:
            del _by_task[task_id]
        return receipt


class Channel(kombu_redis.Channel):
    QoS = QoS
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
