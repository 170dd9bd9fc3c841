"""Urgent work first: how long a small batch takes behind a big normal one, by priority.

    .venv/bin/python -m bench.priority [--big 2000] [--rate 50]

Two worker commands (8 threads each) at PHONEBATCH_RATE_LIMIT=RATE. A big normal batch
(every task queued at once: --no-read) gets going; then three 5-number batches are
submitted together behind it, high, normal and low. The normal one waits its turn behind
the big one's backlog, as every batch did before priorities (FIFO); the high one is taken
first; the low one gets its share of the pops (1 in 10 while others wait). Also shown:
the big batch's pace while they ran, which stays the one shared limit.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.stack import Stack, local_stack
from jobs.operations.producer import BatchOptions
from jobs.queue.priority import Priority
from jobs.store.redis_store import RedisReportStore

SMALL = 5


def _done(store: RedisReportStore, batch_id: str) -> int:
    status = store.status(batch_id)
    assert status is not None
    return status.counts.total - status.counts.pending


def _race(
    stack: Stack, queue: str, big_id: str, rest: list[dict[str, Any]], rate: int
) -> tuple[dict[Priority, float], float]:
    """Once the big batch runs, submit one small batch of each priority together; how long
    each took, and the big batch's pace meanwhile (numbers/s)."""
    store = RedisReportStore(stack.client, retention_seconds=3600)
    while _done(store, big_id) < 2 * rate:
        time.sleep(0.05)
    started, big_before = time.monotonic(), _done(store, big_id)
    small = {}
    for n, priority in enumerate(Priority):
        chunk = rest[n * SMALL : (n + 1) * SMALL]
        small[priority] = stack.submit(
            chunk, queue, f"asst_{priority}", BatchOptions(priority=priority)
        )
    took: dict[Priority, float] = {}
    while len(took) < len(small):
        for priority, batch_id in small.items():
            if priority not in took and _done(store, batch_id) == SMALL:
                took[priority] = time.monotonic() - started
        time.sleep(0.02)
    pace = (_done(store, big_id) - big_before) / (time.monotonic() - started)
    store.cancel(big_id)
    return took, pace


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--big", type=int, default=2000, help="numbers in the normal batch")
    parser.add_argument("--rate", type=int, default=50, help="PHONEBATCH_RATE_LIMIT")
    args = parser.parse_args()
    with local_stack() as stack:
        numbers = stack.reset_simulator(args.big + 3 * SMALL, seed=11)
        big, rest = numbers[: args.big], numbers[args.big :]
        with stack.workers(2, 8, PHONEBATCH_RATE_LIMIT=str(args.rate)) as queue:
            big_id = stack.submit(big, queue, "asst_bulk", BatchOptions(read_first=False))
            took, pace = _race(stack, queue, big_id, rest, args.rate)
    print(f"{SMALL} numbers behind {args.big:,} normal ones at {args.rate}/s, 2 workers x 8")
    for priority in Priority:
        print(f"  {priority.value:<6} batch done after : {took[priority]:6.2f} s")
    print(f"  the big batch meanwhile       : {pace:6.1f} numbers/s")
    print(f"  FIFO (normal) / high          : {took[Priority.NORMAL] / took[Priority.HIGH]:6.1f}x")


if __name__ == "__main__":
    main()
