"""Give a dead worker process's broker messages back to their queue, in seconds.

A worker process beats (`jobs.queue.liveness`) and the transport notes which process holds
each unacknowledged message. `reap`, run by every live worker every few seconds (one at a
time, under a short lock), finds the processes whose beats lapsed and puts their messages
back with kombu's own one-message restore (`RESTORE`): only the caller that removes the
message's `unacked` entry pushes it, so a message goes back exactly once, whether this
sweep, kombu's visibility-timeout sweep or a late ack gets there first. The message keeps
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

from jobs.queue.keys import RESTORE, UNACKED_INDEX_KEY, UNACKED_KEY
from jobs.queue.liveness import HEARTBEATS_KEY, LAPSED, OWNERS_KEY, PRUNE_OWNERS, REAPER_LOCK_KEY

_CHUNK = 500


@dataclass(frozen=True)
class Reaped:
    """What one sweep did."""

    dead: tuple[str, ...] = ()  # processes whose beats lapsed, now forgotten
    restored: int = 0  # their messages put back on the queue
    pruned: int = 0  # owner notes of messages acknowledged meanwhile


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def reap(client: redis.Redis, lapse: float, queues: Collection[str]) -> Reaped:
    """One sweep: the messages of processes silent for `lapse` seconds go back to their
    queue (only to one of `queues`; any other waits for kombu's visibility timeout)."""
    token = uuid.uuid4().hex
    if not client.set(REAPER_LOCK_KEY, token, nx=True, px=int(max(lapse, 1) * 1000)):
        return Reaped()  # another worker is sweeping
    try:
        dead = {_text(p) for p in client.eval(LAPSED, 1, HEARTBEATS_KEY, lapse)}
        restored = pruned = 0
        waiting: set[str] = set()  # dead processes holding messages for other queues
        for chunk in _owner_chunks(client):
            done: list[str] = []
            for tag, owner in chunk:
                if owner not in dead:
                    continue
                outcome = _restore(client, tag, queues)
                if outcome is None:
                    waiting.add(owner)  # for a worker of that queue to put back
                else:
                    restored += outcome
                    done.append(tag)
            if done:
                client.hdel(OWNERS_KEY, *done)
            rest = [tag for tag, owner in chunk if owner not in dead]
            if rest:
                pruned += int(client.eval(PRUNE_OWNERS, 2, OWNERS_KEY, UNACKED_KEY, *rest))
        gone = dead - waiting
        if gone:
            client.zrem(HEARTBEATS_KEY, *gone)
        return Reaped(tuple(sorted(gone)), restored, pruned)
    finally:
        if _text(client.get(REAPER_LOCK_KEY) or b"") == token:
            client.delete(REAPER_LOCK_KEY)


def _owner_chunks(client: redis.Redis) -> Iterable[list[tuple[str, str]]]:
    chunk: list[tuple[str, str]] = []
    for tag, owner in client.hscan_iter(OWNERS_KEY, count=_CHUNK):
        chunk.append((_text(tag), _text(owner)))
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _restore(client: redis.Redis, tag: str, queues: Collection[str]) -> int | None:
    """Put one held message back on its queue (1); 0 if it was acknowledged or restored
    meanwhile; None if it is bound for a queue this worker does not serve."""
    payload: Any = client.hget(UNACKED_KEY, tag)
    if payload is None:
        return 0
    message, _exchange, routing_key = json.loads(payload)
    if routing_key not in queues:
        return None
    _mark_redelivered(message)
    return int(
        client.eval(
            RESTORE, 3, UNACKED_KEY, UNACKED_INDEX_KEY, routing_key, tag, json.dumps(message)
        )
    )


def _mark_redelivered(message: dict[str, Any]) -> None:
    # As kombu's restore marks it: Celery then knows the task may have run before.
    headers = message.get("headers")
    if isinstance(headers, dict):
        headers["redelivered"] = True
    info = (message.get("properties") or {}).get("delivery_info")
    if isinstance(info, dict):
        info["redelivered"] = True
