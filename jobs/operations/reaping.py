"""Give a dead worker process's broker messages back to their queue, in seconds.

A worker process beats (`jobs.queue.liveness`) and the transport notes which process holds
each unacknowledged message. `reap`, run by every live worker every few seconds (one at a
time, under a short lock), finds the processes whose beats lapsed and puts their messages
back, each in one script (`RESTORE_HELD`) that, like kombu's own one-message restore,
pushes only if it removes the message's `unacked` entry, and only while the message is
still noted as the dead process's: a message goes back exactly once, whether this sweep,
kombu's visibility-timeout sweep or a late ack gets there first, and a message already
taken again by a live worker keeps that worker's note. The message keeps
its task id, so the run that takes it retakes the dead run's claim on the item (the same
owner) at once, and the item's outcome is still recorded once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from jobs.queue.keys import RELEASE_LOCK, UNACKED_INDEX_KEY, UNACKED_KEY
from jobs.queue.liveness import (
    FORGET_LAPSED,
    HEARTBEATS_KEY,
    LAPSED,
    OWNERS_KEY,
    PRUNE_OWNERS,
    REAPER_LOCK_KEY,
    RESTORE_HELD,
)
from jobs.queue.priority import level_of, queue_key

_CHUNK = 500


@dataclass(frozen=True)
class Reaped:
    """What one sweep did."""

    dead: tuple[str, ...] = ()  # processes whose beats lapsed, now forgotten
    restored: int = 0  # their messages put back on the queue
    pruned: int = 0  # owner notes of messages acknowledged meanwhile


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def reap(
    client: redis.Redis, lapse: float, queues: Collection[str], me: str | None = None
) -> Reaped:
    """One sweep: the messages of processes silent for `lapse` seconds go back to their
    queue (only to one of `queues`; any other waits for kombu's visibility timeout). `me`,
    the sweeping process: if even it looks silent, Redis was away for everyone, and this
    round gives the others time to beat again instead of taking them all for dead."""
    token = uuid.uuid4().hex
    if not client.set(REAPER_LOCK_KEY, token, nx=True, px=int(max(lapse, 1) * 1000)):
        return Reaped()  # another worker is sweeping
    try:
        dead = {_text(p) for p in client.eval(LAPSED, 1, HEARTBEATS_KEY, lapse)}
        if me is not None and me in dead:
            return Reaped()
        restored = pruned = 0
        waiting: set[str] = set()  # dead processes holding messages for other queues
        for chunk in _owner_chunks(client):
            for tag, owner in chunk:
                if owner in dead:
                    outcome = _restore(client, tag, owner, lapse, queues)
                    if outcome is None:
                        waiting.add(owner)  # for a worker of that queue to put back
                    restored += outcome or 0
            rest = [tag for tag, owner in chunk if owner not in dead]
            if rest:
                pruned += int(client.eval(PRUNE_OWNERS, 2, OWNERS_KEY, UNACKED_KEY, *rest))
        gone = sorted(dead - waiting)
        if gone:
            client.eval(FORGET_LAPSED, 1, HEARTBEATS_KEY, lapse, *gone)
        return Reaped(tuple(gone), restored, pruned)
    finally:
        _release(client, token)


def _release(client: redis.Redis, token: str) -> None:
    """The lock, if it is still this sweep's (it may have expired and been taken)."""
    client.eval(RELEASE_LOCK, 1, REAPER_LOCK_KEY, token)


def _owner_chunks(client: redis.Redis) -> Iterable[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for tag, owner in client.hscan_iter(OWNERS_KEY, count=_CHUNK):
        chunk.append((_text(tag), _text(owner)))
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _restore(
    client: redis.Redis, tag: str, owner: str, lapse: float, queues: Collection[str]
) -> int | None:
    """Put one message of a dead process back on its queue, on its priority's key (1); 0
    if it was acknowledged, restored or taken by another meanwhile; None if it is bound
    for a queue this worker does not serve."""
    payload: Any = client.hget(UNACKED_KEY, tag)
    message, queue = "", next(iter(queues), "")
    if payload is not None:
        found, _exchange, routing_key = json.loads(payload)
        if routing_key not in queues:
            return None
        _mark_redelivered(found)
        # Back on its priority's key of the queue, as kombu's own restore puts it.
        message, queue = json.dumps(found), queue_key(routing_key, level_of(found))
    keys = [OWNERS_KEY, UNACKED_KEY, UNACKED_INDEX_KEY, queue, HEARTBEATS_KEY]
    return int(client.eval(RESTORE_HELD, len(keys), *keys, tag, owner, lapse, message))


def _mark_redelivered(message: dict[str, Any]) -> None:
    # As kombu's restore marks it: Celery then knows the task may have run before.
    headers = message.get("headers")
    if isinstance(headers, dict):
        headers["redelivered"] = True
    info = (message.get("properties") or {}).get("delivery_info")
    if isinstance(info, dict):
        info["redelivered"] = True
