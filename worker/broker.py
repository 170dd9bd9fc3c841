"""The Redis transport the workers use: kombu's, with four changes.

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
3. A message is taken from the queue and noted as unacknowledged in one script
   (`POP_AND_NOTE`), where kombu sends a BRPOP, then a MULTI/EXEC of ZADD and HSET. A
   worker killed between kombu's two steps lost the message it had just popped (the
   item stayed pending until someone ran `phonebatch resume`); here no moment exists
   where a message is in neither place. Also one Redis round trip less per task. The
   script cannot block, so on an empty queue the channel waits with `BLMOVE k k LEFT
   LEFT` on normal's key (`jobs.queue.priority`: where batches go by default), which
   wakes when a message arrives and leaves the queue as it was (a high or low message,
   on another key, waits at most `brpop_timeout`, 1 s). Every idle process wakes for
   the first message, where BRPOP would wake one: a handful of cheap commands, and only
   when a queue stops being empty.
   The script looks at the queue's priority keys in a weighted order, not kombu's strict
   one (`take_order`): of every 10 messages a process takes while several priorities
   wait, at most 8 are high and at least 1 is low, so none starves.
   Used for a channel consuming one queue with acks (Celery's task consumer), without a
   key prefix, on Redis 6.2 or later (BLMOVE); anything else goes kombu's way.
4. A channel survives being closed after Redis went away (docs/upstream/kombu-reconnect.md).
   On a lost connection Celery's consumer calls `Connection.collect()`, then `close()`.
   In `collect`, kombu's `Channel.close` first reads the reply of the pop in flight; on
   a dropped connection that read raises, and the close stops there, before the channel
   is marked closed. `collect` then detaches the transport (`transport.client = None`),
   and `close()` closes the same channel again: it gives its unacked messages back
   through a new pool built from `transport.client`, and the AttributeError ("'NoneType'
   object has no attribute 'hostname'") is no error Celery expects: the worker exited.
   Here the close goes on past a dead connection, and a channel whose transport is gone
   raises a connection error instead of building a pool, which Celery handles as the
   lost connection it is. Messages it could not give back wait in `unacked`, as for any
   close while Redis is down; the process goes on under a new heartbeat name
   (`QoS.restore_unacked`), so the old one lapses and the reaper puts them back within
   seconds (the visibility timeout is the last resort).

None of kombu's names used here is public. `pyproject.toml` allows only the kombu
releases this was read against and tested with (5.7), and `transport_path` checks at
start that every one of them is there: if not, the workers run kombu's own transport
and log one warning line. So does `PHONEBATCH_BROKER_TRANSPORT=kombu`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from queue import Empty
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from jobs.queue.liveness import BEAT, HEARTBEATS_KEY, OWNERS_KEY
from jobs.queue.priority import Priority, take_order
from jobs.store.interface import Receipt
from worker.heartbeat import process_id, renew_identity

log = logging.getLogger(__name__)

# What of kombu's this module overrides or calls, by where kombu (5.7.0) defines it.
CHANNEL_HOOKS = (
    "_brpop_start", "_brpop_read", "_create_client", "_q_for_pri", "_flush_brpop_reauth",
    "_in_poll", "_brpop_sent_at", "_closing", "basic_consume", "priority_steps", "sep",
    "global_keyprefix", "unacked_key", "unacked_index_key", "client", "active_queues", "pool",
    "_get_pool", "close",
)  # fmt: skip
CHANNEL_INSTANCE_HOOKS = ("_queue_cycle", "brpop_timeout", "connection_errors")  # from __init__
QOS_HOOKS = (
    "append", "ack", "reject", "restore_unacked", "unacked_key", "unacked_index_key",
    "pipe_or_acquire",
)  # fmt: skip
VIRTUAL_QOS_HOOKS = ("append", "ack")
TRANSPORT_HOOKS = ("_deliver",)
OURS, KOMBUS = "worker.broker:Transport", "redis"


def missing_hooks() -> list[str]:
    """kombu's internals this transport needs that the installed kombu lacks (or has with
    another signature); [] when it can run."""
    missing = [
        f"{where.__module__}.{where.__qualname__}.{name}"
        for where, names in (
            (kombu_redis.Channel, CHANNEL_HOOKS), (kombu_redis.QoS, QOS_HOOKS),
            (virtual.QoS, VIRTUAL_QOS_HOOKS), (kombu_redis.Transport, TRANSPORT_HOOKS),
        )
        for name in names
        if not hasattr(where, name)
    ]  # fmt: skip
    start = getattr(kombu_redis.Channel, "_brpop_start", None)
    if start is not None and "timeout" not in inspect.signature(start).parameters:
        missing.append("kombu.transport.redis.Channel._brpop_start(timeout)")
    return missing


def transport_path(wanted: str = "phonebatch", *, sentinel: bool = False) -> str:
    """The broker transport for a redis:// URL (a sentinel:// one with `sentinel`): this
    module's, or kombu's own when asked (`wanted` "kombu") or when the installed kombu
    lacks what this one needs."""
    ours, kombus = (SENTINEL_OURS, SENTINEL_KOMBUS) if sentinel else (OURS, KOMBUS)
    if wanted == "kombu":
        return kombus
    missing = missing_hooks() + (missing_sentinel_hooks() if sentinel else [])
    if missing:
        log.warning(
            "kombu %s lacks %s: workers use kombu's own Redis transport (correct, a little "
            "slower per task)", _kombu_version(), ", ".join(missing),
        )  # fmt: skip
        return kombus
    return ours


def _kombu_version() -> str:
    import kombu

    return str(getattr(kombu, "__version__", "?"))


# Task id -> the receipt of the message that task is running from. Filled in kombu's
# consumer thread before the task starts, read in the pool's thread that runs it.
_by_task: dict[str, Receipt] = {}

# KEYS: 1 unacked index, 2 unacked hash, 3 heartbeats, 4 owners, 5... the queue's keys in
# the order to look at them (`Channel._pop_keys`). ARGV: 1 the time now, 2 this process's
# id. Returns {key, message} from the first key holding one, or false when every key is
# empty; a message cjson cannot read stays where it is and the answer is {key, false},
# for kombu's own BRPOP to take. The message is noted as this process's, and the process
# as alive (if its heartbeat has yet to beat), so a process killed right after its first
# pop is found dead like any other (`worker.heartbeat`).
POP_AND_NOTE = """
for i = 5, #KEYS do
  local message = redis.call('LINDEX', KEYS[i], -1)
  if message then
    local ok, decoded = pcall(cjson.decode, message)
    if not ok or type(decoded) ~= 'table' or type(decoded['properties']) ~= 'table' then
      return {KEYS[i], false}
    end
    local properties = decoded['properties']
    local info = properties['delivery_info']
    if type(info) ~= 'table' or type(properties['delivery_tag']) ~= 'string' then
      return {KEYS[i], false}
    end
    local tag = properties['delivery_tag']
    redis.call('RPOP', KEYS[i])
    redis.call('ZADD', KEYS[1], ARGV[1], tag)
    redis.call('HSET', KEYS[2], tag, '[' .. message .. ',' .. cjson.encode(info['exchange'])
      .. ',' .. cjson.encode(info['routing_key']) .. ']')
    redis.call('HSET', KEYS[4], tag, ARGV[2])
    local clock = redis.call('TIME')
    redis.call('ZADD', KEYS[3], 'NX', tonumber(clock[1]) + tonumber(clock[2]) / 1000000, ARGV[2])
    return {KEYS[i], message}
  end
end
return false
"""


def note_holder(pipe: Any, delivery_tag: str) -> None:
    """Note this process as the holder of a message kombu's own pop took."""
    pipe.hset(OWNERS_KEY, delivery_tag, process_id())
    pipe.eval(BEAT, 1, HEARTBEATS_KEY, process_id())  # by the server's clock, as beats are
    pipe.execute()


def receipt_for(task_id: str) -> Receipt | None:
    """The broker entry of the message the task `task_id` is running from, if any."""
    return _by_task.get(task_id)


class QoS(kombu_redis.QoS):
    """kombu's QoS that keeps each message's `Receipt`, so an ack of a settled one skips Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receipts: dict[str, tuple[str, Receipt]] = {}

    def append(self, message: Any, delivery_tag: str) -> None:
        prefix = getattr(self.channel, "global_keyprefix", "") or ""
        if getattr(self.channel, "_noted", False):
            virtual.QoS.append(self, message, delivery_tag)  # POP_AND_NOTE wrote it
        else:
            super().append(message, delivery_tag)
            if not prefix:  # kombu's own pop: note the holder too, one round trip more
                with self.pipe_or_acquire() as pipe:
                    note_holder(pipe, delivery_tag)
        task_id = (message.headers or {}).get("id")
        if isinstance(task_id, str):
            receipt = Receipt(
                prefix + self.unacked_index_key,
                prefix + self.unacked_key,
                delivery_tag,
                owners_key="" if prefix else OWNERS_KEY,
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

    def restore_unacked(self, *args: Any, **kwargs: Any) -> Any:
        # The channel is closing: what it held goes back to the queue, receipts and all.
        for task_id, receipt in self._receipts.values():
            if _by_task.get(task_id) is receipt:
                del _by_task[task_id]
        self._receipts.clear()
        try:
            return super().restore_unacked(*args, **kwargs)
        except Exception:
            # Redis is away: what this channel held stays in `unacked`, noted as this
            # process's, and the process lives on (its heartbeat too). A new name lets the
            # old one lapse, so the reaper puts those messages back within seconds, not
            # after the visibility timeout.
            renew_identity()
            raise

    def _forget(self, delivery_tag: str) -> Receipt | None:
        found = self._receipts.pop(delivery_tag, None)
        if found is None:
            return None
        task_id, receipt = found
        if _by_task.get(task_id) is receipt:
            del _by_task[task_id]
        return receipt


# kombu's type stubs leave out the transport's internals this class works with.
_KombuChannel: Any = kombu_redis.Channel


class Channel(_KombuChannel):  # type: ignore[misc]
    """kombu's Redis channel with one client per pool and the pop-and-note in one script."""

    QoS = QoS
    _sync_client: tuple[Any, Any] | None = None
    _sync_lock = threading.Lock()
    _noted = False  # the message being delivered was noted by POP_AND_NOTE
    _empty = False  # the last pop found nothing: wait before popping again
    _sent: str | None = None  # what the poll connection was last sent: POP or WAIT
    _turn = 0  # messages this channel's pop took: the turn of `take_order`
    _no_ack_queues: frozenset[str] = frozenset()  # consumed without acks: kombu's way
    _has_blmove: bool | None = None

    def basic_consume(self, queue: str, no_ack: bool = False, *args: Any, **kwargs: Any) -> Any:
        # A consumer without acks never removes an unacked entry: the script must not
        # write one for it (Celery's pidbox replies, `celery inspect`).
        if no_ack:
            self._no_ack_queues = self._no_ack_queues | {queue}
        else:
            self._no_ack_queues = self._no_ack_queues - {queue}
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _pops_atomically(self, queues: list[str]) -> bool:
        if len(queues) != 1 or self.global_keyprefix or queues[0] in self._no_ack_queues:
            return False
        if not all(hasattr(self, name) for name in CHANNEL_INSTANCE_HOOKS):
            return False  # a kombu that sets these up otherwise: its own way
        if self._has_blmove is None:
            try:
                info = self._create_client().info("server")
                version = tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])
            except (redis.ResponseError, KeyError, ValueError):
                version = (0, 0)  # a server that will not say: kombu's commands only
            self._has_blmove = version >= (6, 2)
        return self._has_blmove

    def _brpop_start(self, timeout: float | None = None) -> None:
        cycle = getattr(self, "_queue_cycle", None)
        queues = cycle.consume(len(self.active_queues)) if cycle is not None else []
        if not self._pops_atomically(queues):
            self._sent = None
            super()._brpop_start(timeout)
            return
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        if self._empty:
            # Blocks until a message is there; taking the key's newest message and putting
            # it back where it was leaves the queue as it is, for the pop. Normal's key:
            # where most work waits (high and low are taken within the timeout).
            wait = self.brpop_timeout if timeout is None else timeout
            key = self._q_for_pri(queues[0], Priority.NORMAL.level)
            self._sent = "WAIT"
            self.client.connection.send_command("BLMOVE", key, key, "LEFT", "LEFT", wait or 0)
        else:
            keys = self._pop_keys(queues[0])
            self._sent = "POP"
            self.client.connection.send_command(
                "EVAL", POP_AND_NOTE, len(keys) + 4, self.unacked_index_key, self.unacked_key,
                HEARTBEATS_KEY, OWNERS_KEY, *keys, time.time(), process_id(),
            )  # fmt: skip

    def _pop_keys(self, queue: str) -> list[str]:
        """The queue's priority keys in the order this turn looks at them (`take_order`);
        kombu's own steps if they are not the ones the order is for."""
        steps = list(self.priority_steps)
        order = take_order(self._turn)
        if sorted(order) != steps:
            order = tuple(steps)
        return [self._q_for_pri(queue, step) for step in order]

    def _brpop_read(self, **options: Any) -> bool:
        sent, self._sent = self._sent, None
        if sent is None:
            return bool(super()._brpop_read(**options))
        kombu_takes_over = False
        try:
            try:
                answer = self.client.parse_response(self.client.connection, sent, **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # reconnect on the next round
                raise
            if sent == "WAIT":
                # A message came, or the wait timed out: pop next either way, so one on
                # a priority key (not waited on) is taken within `brpop_timeout`.
                self._empty = False
                raise Empty()
            if not answer:
                self._empty = True
                raise Empty()
            key, item = answer
            if not item:
                # cjson could not read it: kombu's BRPOP takes it, as it always did. Not
                # while closing: close() reads one reply, and a BRPOP sent now would pop
                # the message after the connection is gone.
                if not self._closing:
                    kombu_takes_over = True
                    super()._brpop_start()
                raise Empty()
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            self._turn += 1
            self._noted = True
            try:
                self.connection._deliver(loads(bytes_to_str(item)), queue)
            finally:
                self._noted = False
            return True
        finally:
            if not kombu_takes_over:
                self._in_poll = None
                self._flush_brpop_reauth()

    def close(self) -> None:
        # kombu's close reads the reply of a pop in flight first, and stops at the
        # connection error a dropped connection raises there: the channel stays open, to
        # be closed again once its transport is detached (4. above). Nothing can be read
        # from a dead connection (`_brpop_read` has disconnected it): close the rest.
        self._closing = True  # before the read: no BRPOP may be sent while closing
        if self._in_poll:
            try:
                self._brpop_read()
            except Empty:
                pass
            except self.connection_errors:
                log.debug("closing a channel whose poll connection was lost", exc_info=True)
        super().close()

    def _get_pool(self, asynchronous: bool = False) -> Any:
        # A channel left open when its connection was collected has a transport without a
        # client, the connection details kombu builds a pool from: say the connection is
        # gone, as Celery's teardown expects, rather than fail on the missing details.
        if getattr(self.connection, "client", ...) is None:
            raise redis.ConnectionError("the broker connection of this channel was closed")
        return super()._get_pool(asynchronous=asynchronous)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        cached = self._sync_client
        if cached is not None and cached[0] is pool:
            return cached[1]
        with self._sync_lock:
            client = super()._create_client()
            self._sync_client = (pool, client)
            return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with this module's `Channel`: what `transport_path` names."""

    Channel = Channel


# --- Redis Sentinel ---------------------------------------------------------------------
# The same channel over kombu's Sentinel pool: kombu's `SentinelChannel` changes only how
# the channel's pools are made (`_get_pool`, asking the sentinels for the primary), which
# this module's `Channel` never touches, so the two combine by inheritance.

SENTINEL_OURS, SENTINEL_KOMBUS = "worker.broker:SentinelTransport", "sentinel"
SENTINEL_HOOKS = ("SentinelChannel", "SentinelTransport")
SENTINEL_CHANNEL_HOOKS = ("_sentinel_managed_pool", "_get_pool", "from_transport_options")


def missing_sentinel_hooks() -> list[str]:
    """What of kombu's Sentinel transport `SentinelTransport` needs that is missing."""
    missing = [f"kombu.transport.redis.{n}" for n in SENTINEL_HOOKS if not hasattr(kombu_redis, n)]
    channel = getattr(kombu_redis, "SentinelChannel", None)
    if channel is not None:
        missing += [
            f"kombu.transport.redis.SentinelChannel.{name}"
            for name in SENTINEL_CHANNEL_HOOKS
            if name not in vars(channel)
        ]
    return missing


def stay_on_sentinels(alternates: list[str]) -> Iterator[str]:
    """Celery's broker failover strategy for a sentinel:// URL: the first address always.

    On a failed connection kombu moves to the next URL of a `;` list, and reading a URL
    sets the transport by its scheme (kombu's own `sentinel`, dropping this module's).
    Here the list is one group's sentinels, which the channel asks in turn anyway: moving
    gains nothing. A bare host name keeps the transport, port, credentials and database
    the connection was made with."""
    return itertools.repeat(urlsplit(alternates[0]).hostname or "localhost")


_KombuSentinelChannel: Any = getattr(kombu_redis, "SentinelChannel", _KombuChannel)
_KombuSentinelTransport: Any = getattr(kombu_redis, "SentinelTransport", kombu_redis.Transport)


class SentinelChannel(Channel, _KombuSentinelChannel):  # type: ignore[misc]
    """This module's `Channel` on a pool that follows the primary through failovers."""

    QoS = QoS


class SentinelTransport(_KombuSentinelTransport):  # type: ignore[misc]
    """kombu's Sentinel transport with `SentinelChannel`: what `transport_path` names for
    a sentinel:// URL."""

    Channel = SentinelChannel
