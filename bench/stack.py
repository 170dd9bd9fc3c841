"""A private local stack for benchmarks: redis-server, the simulator, worker processes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import redis

from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.cli.services import (
    ServiceError,
    free_port,
    start_redis_server,
    start_simulator,
    stop,
    wait_until,
)
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.store.interface import BatchStatus
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers

API_KEY = "bench-key"


@dataclass
class Stack:
    """A private redis-server and simulator for one benchmark, and the workers it starts."""

    redis_url: str
    sim_url: str
    workdir: Path
    processes: list[Popen[bytes]] = field(default_factory=list)
    running_workers: list[Popen[bytes]] = field(default_factory=list)

    @property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def reset_simulator(self, count: int, seed: int = 1, **faults: Any) -> list[dict[str, Any]]:
        numbers = generate_numbers(count, seed=seed)
        httpx.post(f"{self.sim_url}/_sim/reset", json=numbers, timeout=30).raise_for_status()
        httpx.post(f"{self.sim_url}/_sim/faults", json=faults, timeout=30).raise_for_status()
        # Everything the workers keep in Redis goes too (batches, the limiter, the rate it
        # learned): every run starts cold.
        self.client.flushdb()
        return numbers

    def fault_settings(self) -> dict[str, Any]:
        """The simulator's fault settings now: its keys are the settings it knows."""
        found: dict[str, Any] = httpx.get(f"{self.sim_url}/_sim/faults", timeout=10).json()
        return found

    def numbers_now(self) -> dict[str, dict[str, Any]]:
        """The simulator's numbers as they are now, by id."""
        found = httpx.get(f"{self.sim_url}/_sim/numbers", timeout=60).json()
        return {n["id"]: n for n in found}

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
        **env: str | None,
    ) -> Iterator[str]:
        """`count` worker commands, each of `processes` processes with `concurrency`
        threads. A variable given as None is unset: taken out of the environment the
        workers inherit, and no `.env` is read (they run in the stack's own directory)."""
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        given = {
            "REDIS_URL": self.redis_url, "VAPI_BASE_URL": self.sim_url, "VAPI_API_KEY": API_KEY,
            "PHONEBATCH_QUEUE": queue, **env,
        }  # fmt: skip
        full_env = {k: v for k, v in {**os.environ, **given}.items() if v is not None}
        started = [
            _start_worker(
                full_env,
                cwd=self.workdir,
                concurrency=concurrency,
                log=self.workdir / f"{queue}-w{n}.log",
                extra=["--pool", pool],
                processes=processes,
            )
            for n in range(count)
        ]
        self.running_workers = started
        try:
            # The clock starts once every process is consuming.
            # Logs of this call only: an earlier call's " ready." lines must not count.
            _wait_ready([self.workdir / f"{queue}-w{n}.log" for n in range(count)], started,
                        count * processes)  # fmt: skip
            yield queue
        finally:
            self.running_workers = []
            for process in started:
                stop(process)

    def worker_cpu(self) -> float:
        """CPU seconds (user + system) spent so far by the running worker commands and
        every process under them (`phonebatch worker` is a launcher with children), and by
        children of theirs that have already exited."""
        return sum(_cpu_seconds(pid) for pid in _tree([p.pid for p in self.running_workers]))

    def cli(
        self, *args: str, queue: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """`phonebatch ARGS` against this stack's Redis, as a user would run it; `queue`:
        the workers' (commands that enqueue, `continue` among them, put tasks on it)."""
        env = {**os.environ, "REDIS_URL": self.redis_url}
        if queue is not None:
            env["PHONEBATCH_QUEUE"] = queue
        return subprocess.run(
            [sys.executable, "-m", "jobs.cli", *args],
            env=env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

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


def _start_worker(
    env: Mapping[str, str], *, cwd: Path, concurrency: int, log: Path, extra: Sequence[str],
    processes: int,
) -> Popen[bytes]:  # fmt: skip
    """`phonebatch worker` as `jobs.cli.services.start_worker` starts it, but with exactly
    `env` (not merged into this process's environment) and in `cwd`, where no `.env` is."""
    argv = [
        sys.executable, "-m", "jobs.cli", "worker", "--processes", str(processes),
        "--concurrency", str(concurrency), "--loglevel", "INFO", *extra,
    ]  # fmt: skip
    with open(log, "ab") as out:  # the child keeps its own copy of the fd
        return Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 on (the command name may hold spaces); [] if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


def _tree(roots: Sequence[int]) -> list[int]:
    """`roots` and every live process descending from them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of PID and of its children that exited and were waited for."""
    fields = _stat_fields(pid)
    return sum(int(v) for v in fields[11:15]) / _TICKS if fields else 0.0


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


def _wait_ready(logs: list[Path], started: list[Popen[bytes]], processes: int) -> None:
    """Until `processes` worker processes said they are ready in these logs; the logs'
    tails in the error if one exited or they were not ready within 2 minutes."""
    try:
        wait_until(
            lambda: (
                sum(p.read_text().count(" ready.") for p in logs) >= processes
                or any(p.poll() is not None for p in started)
            ),
            timeout=120,
            what="the workers",
        )
        if any(p.poll() is not None for p in started):
            raise ServiceError("a worker command exited at start")
    except ServiceError as exc:
        tails = "".join(f"\n--- {p.name}:\n{p.read_text()[-2000:]}" for p in logs)
        raise ServiceError(f"{exc}{tails}") from None


def wait_for_done(store: RedisReportStore, batch_id: str, done: int, timeout: float) -> None:
    """Until `done` items of the batch have an outcome (or it ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.status(batch_id)
        if status is not None:
            c = status.counts
            if c.succeeded + c.skipped + c.failed >= done or status.done:
                return
        time.sleep(0.02)
    raise TimeoutError(f"batch {batch_id}: {done} items not done in {timeout} s")


def settle(store: RedisReportStore, batch_id: str, timeout: float = 30) -> BatchStatus | None:
    """Wait for the batch to end, then 1 s more: a late send would show in the log."""
    deadline = time.monotonic() + timeout
    status = store.status(batch_id)
    while time.monotonic() < deadline and not (status is not None and status.done):
        time.sleep(0.05)
        status = store.status(batch_id)
    time.sleep(1.0)
    return store.status(batch_id)
