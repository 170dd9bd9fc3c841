"""Reading a 100,000-item batch: `status` latency and a full CSV export.

    .venv/bin/python -m bench.reports

Goals: status <= 20 ms; the whole CSV export (`phonebatch report ID --format csv -o F`,
a fresh process) <= 5 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.stack import local_stack
from jobs.store.interface import ItemSeed, NewBatch
from jobs.store.keys import batch_key, items_key
from jobs.store.redis_store import RedisReportStore

ITEMS = 100_000


def _finished_batch(client: redis.Redis) -> RedisReportStore:
    """A batch of ITEMS items, every one finished, as workers would have recorded them."""
    store = RedisReportStore(client, retention_seconds=3600)
    seeds = (
        ItemSeed(i, i + 2, f"00000000-0000-4000-8000-{i:012d}", '{"provider":"vapi"}')
        for i in range(ITEMS)
    )
    store.create_batch(NewBatch("bench-100k", "bench", "cli", ITEMS), seeds)
    # Every item finished, as a worker would have recorded it.
    pipe = client.pipeline(transaction=False)
    for start in range(0, ITEMS, 5000):
        records = {
            i: json.dumps(
                {
                    "row": i + 2,
                    "id": f"00000000-0000-4000-8000-{i:012d}",
                    "status": "succeeded",
                    "http_status": 200,
                    "attempts": 1,
                    "error": None,
                    "sent": {"provider": "vapi", "assistantId": "asst_new"},
                    "finished_at": 1.0,
                }
            )
            for i in range(start, min(ITEMS, start + 5000))
        }
        pipe.hset(items_key("bench-100k"), mapping=records)
    pipe.hset(
        batch_key("bench-100k"),
        mapping={"pending": 0, "succeeded": ITEMS, "state": "completed"},
    )
    pipe.execute()
    return store


def main() -> None:
    with local_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        store = _finished_batch(stack.client)

        timings = []
        for _ in range(200):
            started = time.perf_counter()
            status = store.status("bench-100k")
            timings.append((time.perf_counter() - started) * 1000)
        assert status is not None and status.counts.succeeded == ITEMS
        out = Path(tmp) / "report.csv"
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "jobs.cli", "report", "bench-100k", "--format", "csv", "-o", str(out)],
            env={**os.environ, "REDIS_URL": stack.redis_url}, check=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        export = time.monotonic() - started
        lines = sum(1 for _ in out.open())
        print(f"reports: a {ITEMS:,}-item batch")
        print(f"  status, median of 200 : {statistics.median(timings):6.2f} ms "
              f"(p95 {sorted(timings)[189]:.2f} ms; goal <= 20 ms)")  # fmt: skip
        print(f"  full CSV export       : {export:6.2f} s for {lines:,} lines (goal <= 5 s)")


if __name__ == "__main__":
    main()
