"""A private local stack for benchmarks: redis-server, the simulator, worker processes."""

from __future__ import annotations

import io
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import redis

from jobs.intake import read_batch
from jobs.producer import BatchOptions, submit_batch
from jobs.services import (
    free_port,
    start_redis_server,
    start_simulator,
    start_worker,
    stop,
    wait_until,
)
from jobs.sources import Format
from jobs.store import BatchStatus
from jobs.store_redis import RedisReportStore
from simulator.state import generate_numbers

API_KEY = "bench-key"


@dataclass
class Stack:
    redis_url: str
    sim_url: str
    workdir: Path
    processes: list[Popen[bytes]] = field(default_factory=list)

    @property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def reset_simulator(self, count: int, seed: int = 1, **faults: Any) -> list[dict[str, Any]]:
        numbers = generate_numbers(count, seed=seed)
        httpx.post(f"{self.sim_url}/_sim/reset", json=numbers, timeout=30).raise_for_status()
        httpx.post(f"{self.sim_url}/_sim/faults", json=faults, timeout=30).raise_for_status()
        self.client.flushdb()
        return numbers

    def requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(f"{self.sim_url}/_sim/requests", timeout=60).json()
        return found

    def peak_in_flight(self) -> int:
        """The most requests the simulator answered at once since its last reset."""
        found: int = httpx.get(f"{self.sim_url}/_sim/concurrency", timeout=10).json()["peak"]
        return found

    @contextmanager
    def workers(
        self,
        count: int,
        concurrency: int,
        pool: str = "threads",
        processes: int = 1,
        **env: str,
    ) -> Iterator[str]:
        """`count` worker commands, each of `processes` processes with `concurrency`
        threads."""
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        full_env = {
            "REDIS_URL": self.redis_url, "VAPI_BASE_URL": self.sim_url, "VAPI_API_KEY": API_KEY,
            "PHONEBATCH_QUEUE": queue, **env,
        }  # fmt: skip
        started = [
            start_worker(
                env=full_env,
                concurrency=concurrency,
                log=self.workdir / f"{queue}-w{n}.log",
                extra=["--pool", pool],
                processes=processes,
            )
            for n in range(count)
        ]
        try:
            # The clock starts once every process is consuming.
            # Logs of this call only: an earlier call's " ready." lines must not count.
            logs = [self.workdir / f"{queue}-w{n}.log" for n in range(count)]
            wait_until(
                lambda: sum(p.read_text().count(" ready.") for p in logs) >= count * processes,
                timeout=120,
                what="the workers",
            )
            yield queue
        finally:
            for process in started:
                stop(process)

    def submit(
        self,
        numbers: Sequence[dict[str, Any]],
        queue: str,
        assistant: str,
        options: BatchOptions | None = None,
    ) -> str:
        text = "id,provider,assistantId\n" + "".join(
            f"{n['id']},{n['provider']},{assistant}\n" for n in numbers
        )
        intake = read_batch(io.StringIO(text), Format.CSV)
        store = RedisReportStore(self.client, retention_seconds=3600)
        return submit_batch(
            intake.items,
            store=store,
            broker=self.client,
            queue=queue,
            name="bench",
            source="cli",
            options=options,
        )

    def wait(self, batch_id: str, timeout: float = 600) -> BatchStatus:
        store = RedisReportStore(self.client, retention_seconds=3600)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = store.status(batch_id)
            if status is not None and status.done:
                return status
            time.sleep(0.1)
        raise TimeoutError(f"batch {batch_id} did not finish in {timeout} s")


@contextmanager
def local_stack(latency_ms: float = 0.0) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="phonebatch-bench-") as tmp:
        workdir = Path(tmp)
        redis_port, sim_port = free_port(), free_port()
        processes = [start_redis_server(redis_port, workdir / "redis")]
        try:
            processes.append(
                start_simulator(
                    sim_port,
                    numbers=0,
                    seed=1,
                    api_key=API_KEY,
                    latency_ms=latency_ms,
                    log=workdir / "sim.log",
                )
            )
            yield Stack(
                f"redis://127.0.0.1:{redis_port}/0", f"http://127.0.0.1:{sim_port}", workdir
            )
        finally:
            for process in reversed(processes):
                stop(process)
