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

import time
import uuid
from dataclasses import dataclass

import redis

from jobs.operations.recovery import Resumed, is_quiet, is_stalled, resume
from jobs.queue.keys import RELEASE_LOCK
from jobs.store.interface import BatchState, BatchStatus
from jobs.store.redis_store import RedisReportStore

LOCK_KEY = "phonebatch:self-resume"


@dataclass(frozen=True)
class SelfResumed:
    """One batch a sweep resumed, and how."""

    batch_id: str
    pending: int
    resumed: Resumed


def resume_stalled(
    store: RedisReportStore,
    queue: str,
    *,
    quiet_after: float,
    stale_after: float,
    hold: float,
    looked: dict[str, float] | None = None,
) -> list[SelfResumed]:
    """One sweep over the live batches of `queue`; `hold` bounds the lock (s). `looked`
    (batch id -> when its tasks were last looked for and found, kept by the caller) spares
    a quiet batch that has tasks waiting (a long hand-back) a look at the whole queue on
    every sweep: it is looked at again once it has been quiet that long since."""
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
            if looked is not None and time.monotonic() - looked.get(batch_id, -1e9) < quiet_after:
                continue
            if not is_stalled(client, queue, status, stale_after, quiet_after):
                if looked is not None and is_quiet_now(client, status, quiet_after):
                    looked[batch_id] = time.monotonic()
                continue
            resumed = resume(store, client, queue, batch_id, stale_after)
            if resumed.restored or resumed.reenqueued:
                store.note_resumed(batch_id)
                done.append(SelfResumed(batch_id, status.counts.pending, resumed))
        store.forget_finished(finished)
        for batch_id in finished:
            if looked is not None:
                looked.pop(batch_id, None)
        return done
    finally:
        client.eval(RELEASE_LOCK, 1, LOCK_KEY, token)  # if still ours


def is_quiet_now(client: redis.Redis, status: BatchStatus, quiet_after: float) -> bool:
    seconds, micros = client.time()  # batch times come from the Redis server's clock
    return is_quiet(status, seconds + micros / 1e6, quiet_after)
