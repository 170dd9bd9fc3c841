"""This worker process's heartbeat (`jobs.queue.liveness`).

It beats in a daemon thread (`worker.pump`), apart from the pool's threads: a process
whose threads all wait on slow requests still beats, so a slow request is never taken for
a dead worker. The heartbeat is never stopped before the process ends: a warm shutdown
still finishes its tasks, and their messages must stay theirs until it does.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

import redis

from jobs.queue.liveness import BEAT, HEARTBEATS_KEY
from worker.pump import Pump

log = logging.getLogger(__name__)

HEARTBEAT = "phonebatch-heartbeat"
_identity: tuple[int, str] | None = None


def process_id() -> str:
    """This process's name in the heartbeats: host, pid and a random part (a pid is
    reused, and a forked child is another process)."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
    return _identity[1]


def renew_identity() -> str:
    """A new name for this process: the messages noted under the old one are left to the
    reaper once it lapses (a channel that could not give them back)."""
    global _identity
    old = process_id()
    _identity = None
    new = process_id()
    log.warning("process %s goes on as %s: what it held goes back once %s lapses", old, new, old)
    return new


def beat(client: redis.Redis) -> bool:
    """One beat; True when this process was not listed (first beat, or declared dead)."""
    return bool(client.eval(BEAT, 1, HEARTBEATS_KEY, process_id()))


def heartbeat_pump(client: redis.Redis, interval: float) -> Pump:
    """Beats every `interval` seconds for as long as the process lives."""
    first: list[Any] = [True, process_id()]  # first beat yet?, the name last beaten

    def tick() -> None:
        try:
            unlisted = beat(client)
        except redis.RedisError as exc:  # Redis restarting: beat again next tick
            log.warning("heartbeat not written: %s", exc)
            return
        if unlisted and not first[0] and process_id() == first[1]:
            # Silent past the lapse (a stalled host, Redis away): the messages this
            # process held went back to the queue, and may run twice (counted once).
            log.warning("process %s was taken for dead; beating again", process_id())
        first[:] = [False, process_id()]

    tick()  # listed before the first task is taken
    return Pump(HEARTBEAT, tick, interval)
