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
