"""Soak: a big batch end to end while worker processes are killed and Redis restarts.

`make soak` (or `python -m bench.soak --numbers 100000`): a private redis-server (append
only, so a restart keeps the data) and the simulator (no latency, no limit), one
`phonebatch worker` launcher with several processes. While the batch runs, one worker
process is SIGKILLed every `--kill-every` seconds (the launcher starts it again; the
heartbeats give its tasks back) and Redis is restarted once, half way. At the end: the
counts (each item once), the numbers' final state, every worker exit that was not one of
ours, the workers' memory over time (RSS of each process, sampled) and Redis's memory per
queued item, measured before any worker starts.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.stack import API_KEY, _tree
from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.cli.services import free_port, start_redis_server, start_simulator, stop
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.store.interface import BatchStatus, ItemStatus, iter_items
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers

QUEUE = "soak"
WORTH_SHOWING = r"Unrecoverable|Traceback|Error|exited with code"
EXITED = re.compile(r"worker process \d+ exited with code (-?\d+)")


@dataclass
class Sample:
    """One look at the run: seconds since the start, items done, RSS of each worker (MB)."""

    at: float
    done: int
    rss_mb: list[float]


@dataclass
class Soak:
    """The run's private processes and what happened to them."""

    workdir: Path
    redis_port: int
    sim_url: str
    redis_server: subprocess.Popen[bytes]
    launcher: subprocess.Popen[bytes] | None = None
    kills: int = 0
    restarts: int = 0
    samples: list[Sample] = field(default_factory=list)
    baseline: int = 0  # Redis's used memory before the batch

    def kept_per_item(self, items: int) -> float:
        """Redis bytes per item once the batch ended: its report, kept for the retention."""
        used = int(redis.Redis.from_url(self.url).info("memory")["used_memory"])
        return (used - self.baseline) / items

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def restart_redis(self) -> None:
        stop(self.redis_server)  # SIGTERM: Redis writes its append-only file and exits
        self.redis_server = start_redis_server(
            self.redis_port, self.workdir / "redis", appendonly=True
        )
        self.restarts += 1

    def worker_pids(self) -> list[int]:
        """The Celery processes under the launcher (not the launcher itself)."""
        if self.launcher is None:
            return []
        return [p for p in _tree([self.launcher.pid]) if p != self.launcher.pid]

    def kill_one(self) -> None:
        pids = self.worker_pids()
        if pids:
            os.kill(random.choice(pids), signal.SIGKILL)
            self.kills += 1

    def unplanned_exits(self) -> list[int]:
        """Exit codes of worker processes that died other than by our SIGKILL."""
        text = (self.workdir / "workers.log").read_text(errors="replace")
        return [int(c) for c in EXITED.findall(text) if int(c) != -signal.SIGKILL]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def soak_stack() -> Iterator[Soak]:
    with tempfile.TemporaryDirectory(prefix="phonebatch-soak-") as tmp:
        workdir = Path(tmp)
        port, sim_port = free_port(), free_port()
        server = start_redis_server(port, workdir / "redis", appendonly=True)
        sim = start_simulator(sim_port, numbers=0, seed=1, api_key=API_KEY, log=workdir / "s.log")
        soak = Soak(workdir, port, f"http://127.0.0.1:{sim_port}", server)
        try:
            yield soak
        finally:
            for process in (soak.launcher, sim, soak.redis_server):
                if process is not None:
                    stop(process, timeout=30)


def start_workers(soak: Soak, processes: int, concurrency: int) -> None:
    env = {
        **os.environ, "REDIS_URL": soak.url, "VAPI_BASE_URL": soak.sim_url,
        "VAPI_API_KEY": API_KEY, "PHONEBATCH_QUEUE": QUEUE, "PHONEBATCH_RATE_LIMIT": "0",
    }  # fmt: skip
    argv = [
        sys.executable, "-m", "jobs.cli", "worker", "--processes", str(processes),
        "--concurrency", str(concurrency), "--loglevel", "WARNING",
    ]  # fmt: skip
    with open(soak.workdir / "workers.log", "ab") as out:
        soak.launcher = subprocess.Popen(
            argv, env=env, cwd=soak.workdir, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def submit(client: redis.Redis, numbers: Sequence[dict[str, Any]], read_first: bool) -> str:
    text = "id,provider,assistantId\n" + "".join(
        f"{n['id']},{n['provider']},asst_soak\n" for n in numbers
    )
    intake = read_batch(io.StringIO(text), Format.CSV)
    store = RedisReportStore(client, retention_seconds=7200)
    return submit_batch(
        intake.items, store=store, broker=client, queue=QUEUE, name="soak", source="cli",
        options=BatchOptions(read_first=read_first),
    )  # fmt: skip


def memory_per_item(client: redis.Redis, numbers: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Redis bytes per item of a batch just submitted, no worker running: queued one task
    per item (no read first), and read first (items wait for the listing), by key."""
    found: dict[str, float] = {}
    for read_first in (False, True):
        client.flushdb()
        before = int(client.info("memory")["used_memory"])
        submit(client, numbers, read_first)
        used = int(client.info("memory")["used_memory"]) - before
        label = "read first" if read_first else "queued"
        found[label] = used / len(numbers)
        for key in client.scan_iter(count=1000):
            kind = _kind(key.decode())
            size = int(client.memory_usage(key, samples=0) or 0)
            found[f"{label}: {kind}"] = found.get(f"{label}: {kind}", 0.0) + size / len(numbers)
    client.flushdb()
    return found


def _kind(key: str) -> str:
    """A key's part of a batch: 'items', 'bodies', ... or the queue."""
    return "queue messages" if key == QUEUE else key.rsplit(":", 1)[-1]


def run(soak: Soak, numbers: Sequence[dict[str, Any]], args: argparse.Namespace) -> BatchStatus:
    client = redis.Redis.from_url(soak.url)
    store = RedisReportStore(client, retention_seconds=7200)
    soak.baseline = int(client.info("memory")["used_memory"])
    batch_id = submit(client, numbers, read_first=False)
    start_workers(soak, args.processes, args.concurrency)
    began = next_kill = time.monotonic()
    next_kill += args.kill_every
    restarted = False
    while True:
        status = _status(store, batch_id)
        done = 0 if status is None else status.counts.total - status.counts.pending
        now = time.monotonic()
        soak.samples.append(Sample(now - began, done, [_rss_mb(p) for p in soak.worker_pids()]))
        if status is not None and status.done:
            return status
        if now - began > args.timeout:
            raise TimeoutError(f"the batch did not finish in {args.timeout} s: {status}")
        if now >= next_kill:
            soak.kill_one()
            next_kill = now + args.kill_every
        if not restarted and done >= len(numbers) // 2:
            soak.restart_redis()
            restarted = True
        time.sleep(args.sample_every)


def _status(store: RedisReportStore, batch_id: str) -> BatchStatus | None:
    try:
        return store.status(batch_id)
    except redis.RedisError:
        return None  # Redis is restarting


def _check(soak: Soak, final: BatchStatus, numbers: Sequence[dict[str, Any]]) -> list[str]:
    """What went wrong, if anything: counts, final state of every number, exits."""
    problems = []
    store = RedisReportStore(redis.Redis.from_url(soak.url), retention_seconds=7200)
    counts = final.counts
    if (counts.succeeded, counts.pending, counts.failed) != (len(numbers), 0, 0):
        problems.append(f"counts {counts.as_dict()}")
    statuses = {r.status for r in iter_items(store, final.batch_id, len(numbers))}
    if statuses != {ItemStatus.SUCCEEDED}:
        problems.append(f"item statuses {statuses}")
    state = httpx.get(f"{soak.sim_url}/_sim/numbers", timeout=120).json()
    wrong = sum(1 for n in state if n.get("assistantId") != "asst_soak")
    if wrong:
        problems.append(f"{wrong} numbers not changed")
    if soak.unplanned_exits():
        problems.append(f"worker exits not ours: codes {soak.unplanned_exits()}")
    return problems


def report(soak: Soak, final: BatchStatus, took: float, memory: dict[str, float]) -> None:
    n = final.counts.total
    print(f"\n{n:,} numbers in {took:.0f} s ({n / took:.0f}/s); {soak.kills} worker processes "
          f"SIGKILLed, {soak.restarts} Redis restart(s); counts {final.counts.as_dict()}")  # fmt: skip
    print(f"worker exits other than our kills: {len(soak.unplanned_exits())}")
    print("\nRedis bytes per item (submitted, no worker running):")
    for label, value in memory.items():
        print(f"  {label:<34} {value:8.0f}")
    print(f"  {'ended: the report, kept':<34} {soak.kept_per_item(n):8.0f}")
    print("\nworker RSS over time (MB: sum, biggest process), every ~10% of the run:")
    step = max(1, len(soak.samples) // 10)
    for sample in soak.samples[::step] + soak.samples[-1:]:
        total, top = sum(sample.rss_mb), max(sample.rss_mb, default=0.0)
        print(f"  t={sample.at:6.0f} s  done {sample.done:>7,}  sum {total:6.0f}  max {top:5.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--numbers", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--sample-every", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    numbers = generate_numbers(args.numbers, seed=7)
    with soak_stack() as soak:
        httpx.post(f"{soak.sim_url}/_sim/reset", json=numbers, timeout=300).raise_for_status()
        memory = memory_per_item(redis.Redis.from_url(soak.url), numbers)
        began = time.monotonic()
        final = run(soak, numbers, args)
        took = time.monotonic() - began
        report(soak, final, took, memory)
        problems = _check(soak, final, numbers)
        if problems:  # the workers' own words, before their directory goes
            lines = (soak.workdir / "workers.log").read_text(errors="replace").splitlines()
            shown = [line[:400] for line in lines if re.search(WORTH_SHOWING, line)]
            print("\n".join(shown[-20:]))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
