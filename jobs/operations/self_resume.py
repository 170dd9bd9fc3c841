"""The workers resume a stalled batch by themselves: nobody has to type `resume`.

A batch stalls when its pending items have no task anywhere (a Redis that lost its
queue, a crash in the instant of a write). Every worker runs `resume_stalled` every few
seconds, one at a time under a lock: each live batch of its queue that has been quiet
for a while and has no task that can still run is resumed exactly as `phonebatch resume`
does it (stranded tasks put back, items with no task enqueued again: the claims make a
duplicate harmless), and its status says so. A paused batch is quiet on purpose and is
never looked at; nor is a batch of another queue (its workers look after it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from jobs.operations.recovery import Resumed, is_stalled, resume
from jobs.store.interface import BatchState
from jobs.store.redis_store import RedisReportStore

LOCK_KEY = "phonebatch:self-resume"


@dataclass(frozen=True)
class SelfResumed:
    """One batch a sweep resumed, and how."""

    batch_id: str
    pending: int
    resumed: Resumed


def resume_stalled(
    store: RedisReportStore, queue: str, *, quiet_after: float, stale_after: float, hold: float
) -> list[SelfResumed]:
    """One sweep over the live batches of `queue`; `hold` bounds the lock (s)."""
    client = store.client
    token = uuid.uuid4().hex
    if not client.set(LOCK_KEY, token, nx=True, px=int(hold * 1000)):
        return []  # another worker is sweeping
    try:
        finished: list[str] = []
        done: list[SelfResumed] = []
        for batch_id in store.unfinished():
            status = store.status(batch_id)
            if status is None or status.done:
                finished.append(batch_id)  # ended, or expired: nothing to look after
                continue
            if status.queue != queue or status.state is BatchState.PAUSED or status.selecting:
                continue
            if not is_stalled(client, queue, status, stale_after, quiet_after):
                continue
            resumed = resume(store, client, queue, batch_id, stale_after)
            if resumed.restored or resumed.reenqueued:
                store.note_resumed(batch_id)
                done.append(SelfResumed(batch_id, status.counts.pending, resumed))
        store.forget_finished(finished)
        return done
    finally:
        if client.get(LOCK_KEY) == token.encode():
            client.delete(LOCK_KEY)
