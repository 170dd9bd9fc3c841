"""Helpers for end-to-end tests: talk to the simulator, run the CLI, wait for batches."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.operations.self_resume import LOCK_KEY as SELF_RESUME_LOCK_KEY
from jobs.queue.liveness import HEARTBEATS_KEY, REAPER_LOCK_KEY
from jobs.store.interface import BatchStatus, ReportStore
from jobs.store.redis_store import RedisReportStore


@dataclass
class Simulator:
    url: str
    log: Path

    def reset(self, numbers: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/_sim/reset", json=numbers, timeout=10).raise_for_status()

    def numbers(self) -> dict[str, dict[str, Any]]:
        found = httpx.get(f"{self.url}/_sim/numbers", timeout=10).json()
        return {n["id"]: n for n in found}

    def set_faults(self, **faults: Any) -> None:
        httpx.post(f"{self.url}/_sim/faults", json=faults, timeout=10).raise_for_status()

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        logged: list[dict[str, Any]] = httpx.get(f"{self.url}/_sim/requests", timeout=10).json()
        return [r for r in logged if method is None or r["method"] == method]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_batch(
    store: ReportStore, batch_id: str, workers: Sequence[WorkerProcess], timeout: float = 60
) -> BatchStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.status(batch_id)
        if status is not None and status.done:
            return status
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"a worker exited:\n{worker.log_tail()}")
        time.sleep(0.05)
    tails = "\n".join(w.log_tail() for w in workers)
    raise AssertionError(f"batch {batch_id} did not finish: {store.status(batch_id)}\n{tails}")


def submit_rows(
    client: redis.Redis,
    queue: str,
    header: str,
    rows: Sequence[str],
    name: str = "test",
    webhook_url: str | None = None,
    options: BatchOptions | None = None,
) -> tuple[RedisReportStore, str]:
    """Validate CSV rows and submit them as the CLI would; returns the store and batch id."""
    text = header + "\n" + "\n".join(rows) + "\n"
    intake = read_batch(io.StringIO(text), Format.CSV)
    assert intake.ok, intake.errors
    store = RedisReportStore(client, retention_seconds=3600)
    batch_id = submit_batch(
        intake.items,
        store=store,
        broker=client,
        queue=queue,
        name=name,
        source="cli",
        webhook_url=webhook_url,
        options=options,
    )
    return store, batch_id


# What a running worker writes on its own every few seconds: its heartbeat and the locks
# of its sweeps. The session's worker (conftest `worker`) shares the session's Redis.
WORKERS_OWN_KEYS = frozenset({HEARTBEATS_KEY, REAPER_LOCK_KEY, SELF_RESUME_LOCK_KEY})


def stored(client: redis.Redis) -> dict[str, object]:
    """Every key in the database (but a live worker's own, `WORKERS_OWN_KEYS`) with what it
    holds: empty when nothing was written; names its writer when something was."""
    found: dict[str, object] = {}
    for key in client.scan_iter(count=1000):
        name = key.decode()
        # kombu's bindings are declared by a live worker (the session's) whenever it
        # (re)connects: not written by what a test runs.
        if name in WORKERS_OWN_KEYS or name.startswith("_kombu.binding"):
            continue
        kind = client.type(key).decode()
        found[name] = client.zrange(key, 0, 9, withscores=True) if kind == "zset" else kind
    return found


# Short timeouts make a task's longest run (its claim lease) about 14 s, so the broker's
# visibility timeout, which must outlast it, can be 16 s: a task stranded in `unacked`
# comes back within a test's patience.
QUICK_RECOVERY = {
    "PHONEBATCH_TASK_TIME_BUDGET": "2",
    "PHONEBATCH_CONNECT_TIMEOUT": "0.5",
    "PHONEBATCH_READ_TIMEOUT": "0.5",
    "PHONEBATCH_WRITE_TIMEOUT": "0.5",
    "PHONEBATCH_POOL_TIMEOUT": "0.5",
    "PHONEBATCH_VISIBILITY_TIMEOUT": "16",
}
QUICK_LEASE = 2 + 4 * 0.5 + 10  # the claim lease QUICK_RECOVERY gives (Settings.claim_lease)


def csv_rows(numbers: Sequence[dict[str, object]], assistant: str) -> list[str]:
    """`id,provider,assistantId` rows moving these numbers to `assistant`."""
    return [f"{n['id']},{n['provider']},{assistant}" for n in numbers]


def progress(store: RedisReportStore, batch_id: str) -> int:
    """How many of the batch's items have an outcome."""
    status = store.status(batch_id)
    assert status is not None
    return status.counts.total - status.counts.pending


def wait_for_progress(store: RedisReportStore, batch_id: str, done: int) -> None:
    deadline = time.monotonic() + 60
    while progress(store, batch_id) < done:
        assert time.monotonic() < deadline, "the batch made no progress"
        time.sleep(0.02)
