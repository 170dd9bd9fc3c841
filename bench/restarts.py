"""Redis restarted again and again under load: no worker process exits, and the batch
still completes with every item counted once (`make restarts`).

    .venv/bin/python -m bench.restarts [--restarts 20] [--numbers 3000] [--workers 3]
                                       [--transport phonebatch|kombu]

A private redis-server (appendonly, as README asks of a production Redis) and the
simulator (20 ms latency); `--workers` worker commands of one Celery process each (so a
process that exits is one the bench sees: nothing restarts it), 8 threads, no pace. The
batch is submitted, then, `--restarts` times: wait until the workers have recorded
`--between` more items since Redis came back (so each restart lands on busy workers),
stop Redis (SIGTERM: it writes its append-only file and exits) and start it again on the
same port. Then wait for the batch to end.

Passes when no worker process exited and no log says "Unrecoverable error", and the
batch completed with every item succeeded exactly once (counts and report agree, every
number holds the new assistant). A PATCH may be sent twice (a task running when Redis
went down comes back after the visibility timeout; the PATCH is idempotent), so the
summary counts them, but an item is recorded once. Exit 0 on a pass, 1 otherwise; on a
failure the bench's directory (the workers' logs, Redis's files) is kept, and where the
batch's tasks were (queue, hand-backs, unacked, numbers not yet listed) is printed.

`--transport kombu` runs kombu's own transport, which still has the bug worker/broker.py
works around (docs/upstream/kombu-reconnect.md): expect exits.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from bench.stack import API_KEY, Stack
from jobs.batch.reads import unread_key
from jobs.cli.services import free_port, start_redis_server, start_simulator, stop
from jobs.queue.keys import UNACKED_KEY, deferred_key
from jobs.queue.priority import queue_length
from jobs.store.interface import BatchStatus, ItemStatus, iter_items
from jobs.store.redis_store import RedisReportStore

ASSISTANT = "asst_restarts"
# Short timeouts, so a task's longest run (its claim lease) is about 14 s and the
# visibility timeout that must outlast it can be 16 s: tasks stranded in `unacked` by a
# restart come back within the bench's patience (tests/test_e2e_crash.py does the same).
WORKER_ENV = {
    "PHONEBATCH_RATE_LIMIT": "0",
    "PHONEBATCH_TASK_TIME_BUDGET": "2",
    "PHONEBATCH_CONNECT_TIMEOUT": "0.5",
    "PHONEBATCH_READ_TIMEOUT": "0.5",
    "PHONEBATCH_WRITE_TIMEOUT": "0.5",
    "PHONEBATCH_POOL_TIMEOUT": "0.5",
    "PHONEBATCH_VISIBILITY_TIMEOUT": "16",
    "PHONEBATCH_LOG_FORMAT": "text",
}


@dataclass
class Redis:
    """The private redis-server, restarted in place on its port and directory."""

    port: int
    directory: Path
    process: Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start_redis_server(self.port, self.directory, appendonly=True)

    def restart(self) -> None:
        if self.process is not None:
            stop(self.process)  # SIGTERM: the append-only file is written first
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@dataclass
class Outcome:
    """What the run saw: restarts, exits, the batch's end, PATCHes sent."""

    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    unrecoverable: int = 0
    status: BatchStatus | None = None
    report: Counter[str] = field(default_factory=Counter)
    patches: int = 0
    numbers_patched: int = 0
    numbers_right: int = 0
    seconds: float = 0.0
    stalled: str = ""
    tasks: dict[str, int] = field(default_factory=dict)  # where the batch's tasks were


def _done(store: RedisReportStore, batch_id: str) -> int:
    status = store.status(batch_id)
    return 0 if status is None else status.counts.total - status.counts.pending


def _wait_for(store: RedisReportStore, batch_id: str, done: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.status(batch_id)
        if status is not None and (status.done or _done(store, batch_id) >= done):
            return True
        time.sleep(0.05)
    return False


def _restart_under_load(
    redis: Redis, store: RedisReportStore, batch_id: str, args: argparse.Namespace,
    workers: list[Popen[bytes]],
) -> str:  # fmt: skip
    """The restarts; '' when all were done on a batch still running, else why not."""
    for n in range(1, args.restarts + 1):
        target = _done(store, batch_id) + args.between
        if not _wait_for(store, batch_id, target, timeout=120):
            return f"no progress for 120 s before restart {n}"
        status = store.status(batch_id)
        if status is not None and status.done:
            return f"the batch ended before restart {n}: use more --numbers"
        redis.restart()
        alive = sum(w.poll() is None for w in workers)
        print(f"  restart {n:2}: {_done(store, batch_id):5} items done, "
              f"{alive}/{len(workers)} worker processes alive", flush=True)  # fmt: skip
    return ""


def _check(
    stack: Stack, store: RedisReportStore, batch_id: str, queue: str, outcome: Outcome
) -> None:
    outcome.status = store.status(batch_id)
    if outcome.status is not None:
        total = outcome.status.counts.total
        outcome.report = Counter(r.status.value for r in iter_items(store, batch_id, total))
    client = stack.client
    outcome.tasks = {
        "queued": queue_length(client, queue),
        "handed back": int(client.zcard(deferred_key(queue))),
        "unacked": int(client.hlen(UNACKED_KEY)),
        "not listed yet": int(client.hlen(unread_key(batch_id))),
    }
    patches = [r for r in stack.requests() if r["method"] == "PATCH"]
    outcome.patches = len(patches)
    outcome.numbers_patched = len({r["id"] for r in patches})
    outcome.numbers_right = sum(
        n.get("assistantId") == ASSISTANT for n in stack.numbers_now().values()
    )


def _run(stack: Stack, redis: Redis, args: argparse.Namespace) -> Outcome:
    outcome = Outcome()
    env = WORKER_ENV | {"PHONEBATCH_BROKER_TRANSPORT": args.transport}
    numbers = stack.reset_simulator(args.numbers, seed=7, latency_ms=20)
    store = RedisReportStore(stack.client, retention_seconds=3600)
    with stack.workers(count=args.workers, concurrency=8, processes=1, **env) as queue:
        workers = list(stack.running_workers)
        started = time.monotonic()
        batch_id = stack.submit(numbers, queue, ASSISTANT)
        outcome.stalled = _restart_under_load(redis, store, batch_id, args, workers)
        # Tasks held when Redis went down come back after the visibility timeout (16 s).
        if not outcome.stalled and not _wait_for(store, batch_id, args.numbers, timeout=120):
            outcome.stalled = "the batch did not end within 120 s of the last restart"
        outcome.seconds = time.monotonic() - started
        outcome.restarts = redis.restarts
        outcome.exits = [i for i, w in enumerate(workers) if w.poll() is not None]
        logs = stack.workdir.glob(f"{queue}-w*.log")
        outcome.unrecoverable = sum(p.read_text().count("Unrecoverable error") for p in logs)
        _check(stack, store, batch_id, queue, outcome)
    return outcome


def _passed(outcome: Outcome, args: argparse.Namespace) -> bool:
    counts = outcome.status.counts.as_dict() if outcome.status is not None else {}
    return (
        not outcome.stalled
        and outcome.restarts == args.restarts
        and not outcome.exits
        and outcome.unrecoverable == 0
        and counts.get("total") == counts.get("succeeded") == args.numbers
        and outcome.report == Counter({ItemStatus.SUCCEEDED.value: args.numbers})
        and outcome.numbers_right == args.numbers
    )


def _summary(outcome: Outcome, args: argparse.Namespace) -> None:
    counts = outcome.status.counts.as_dict() if outcome.status is not None else {}
    succeeded = outcome.report.get(ItemStatus.SUCCEEDED.value, 0)
    print(f"\nrestarts done:          {outcome.restarts}/{args.restarts}")
    print(f"worker processes exited: {len(outcome.exits)} of {args.workers}"
          f" ({outcome.unrecoverable} 'Unrecoverable error' lines in their logs)")  # fmt: skip
    print(f"batch:                  {outcome.status.state.value if outcome.status else '?'},"
          f" counts {counts}")  # fmt: skip
    print(
        f"report:                 {succeeded}/{args.numbers} items succeeded, "
        f"{sum(outcome.report.values())} items listed, {dict(outcome.report)}"
    )
    print(
        f"numbers changed:        {outcome.numbers_right}/{args.numbers}; PATCHes sent "
        f"{outcome.patches} for {outcome.numbers_patched} numbers "
        f"({outcome.patches - outcome.numbers_patched} sent again)"
    )
    print(f"time:                   {outcome.seconds:.1f} s from submit to the batch's end")
    if outcome.stalled:
        print(f"stopped early:          {outcome.stalled}")
        print(f"the batch's tasks:      {outcome.tasks}")
    print("PASS" if _passed(outcome, args) else "FAIL")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--numbers", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--between", type=int, default=40, help="items done between restarts")
    parser.add_argument("--transport", choices=["phonebatch", "kombu"], default="phonebatch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    print(f"{args.restarts} Redis restarts under load: {args.numbers:,} numbers, "
          f"{args.workers} worker processes x 8 threads, transport {args.transport}")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="phonebatch-restarts-"))
    redis = Redis(free_port(), workdir / "redis")
    sim: Popen[bytes] | None = None
    outcome = Outcome(stalled="the stack did not start")
    try:
        redis.start()
        sim_port = free_port()
        sim = start_simulator(sim_port, numbers=0, seed=1, api_key=API_KEY,
                              log=workdir / "sim.log")  # fmt: skip
        stack = Stack(redis.url, f"http://127.0.0.1:{sim_port}", workdir)
        outcome = _run(stack, redis, args)
    finally:
        if sim is not None:
            stop(sim)
        redis.stop()
        _summary(outcome, args)
        if _passed(outcome, args):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept for a look: {workdir} (the workers' logs, Redis's files)")
    return 0 if _passed(outcome, args) else 1


if __name__ == "__main__":
    sys.exit(main())
