"""Throughput and CPU per number against a raw aiohttp loop; overhead against a plain
sequential loop.

    .venv/bin/python -m bench.throughput [--rounds 3] [--numbers 2000] [--sections throughput,overhead]

Needs the bench extra (`make bench`, or `.venv/bin/pip install -c constraints.txt -e
'.[dev,bench]'`).

1. throughput: 2,000 numbers, the simulator answering after 50 ms, 32 requests in
   flight in total. Ours: the default `phonebatch worker` (2 processes per core × 8
   threads), PHONEBATCH_RATE_LIMIT=0, reads on (the default: it reads, then PATCHes).
   Baseline: a raw aiohttp loop, one `ClientSession` (connector limit 32) and an
   `asyncio.Semaphore(32)`, PATCHing every number once. Goal: our numbers/s ÷ the
   baseline's >= 0.9. (The asyncio httpx loop this used to be measured against collapses
   on this VM, httpcore's async pool scanning every connection for every request,
   encode/httpx#3215: no fair yardstick.)
2. overhead: 5,000 numbers, no latency. Baseline: a sequential sync httpx loop; ours
   with `read_first` off, one request per number on both sides. Goal: >= 0.5.

Both sides send to the same simulator, and every rate comes from its request log:
numbers ÷ (the last accepted PATCH - the first request logged). CPU per number: the
baseline's own process CPU over its loop (`time.process_time`); ours the user + system
CPU of every worker process (the `phonebatch worker` launcher, its Celery processes
and their threads) from the moment they are ready to the end of the batch, from
/proc/PID/stat. Neither counts the simulator's CPU nor Redis's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stack import API_KEY, Stack, local_stack
from jobs.operations.producer import BatchOptions
from worker.launcher import default_processes

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - a message, not a traceback
    raise SystemExit(
        "bench.throughput needs the bench extra: make bench, or "
        ".venv/bin/pip install -c constraints.txt -e '.[dev,bench]'"
    ) from exc

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
IN_FLIGHT, LATENCY_MS = 32, 50
PROCESSES, THREADS = default_processes(), 8  # what `phonebatch worker` starts by default


@dataclass(frozen=True)
class Run:
    """One side's run as the simulator and /proc saw it."""

    rate: float  # numbers/s
    cpu_ms: float  # CPU per number
    requests_per_number: float
    peak: int  # the most requests the simulator answered at once


def _figures(stack: Stack, count: int, cpu_seconds: float) -> Run:
    log = stack.requests()
    first = min(r["at"] for r in log)
    last = max(r["at"] for r in log if r["method"] == "PATCH" and r["status"] == 200)
    return Run(
        count / (last - first), cpu_seconds * 1000 / count, len(log) / count, stack.peak_in_flight()
    )


def _body(number: dict[str, Any]) -> bytes:
    return json.dumps({"provider": number["provider"], "assistantId": "asst_raw"}).encode()


async def _aiohttp_loop(stack: Stack, numbers: list[dict[str, Any]], in_flight: int) -> None:
    gate = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(
        stack.sim_url, headers=HEADERS, connector=connector
    ) as session:

        async def one(number: dict[str, Any]) -> None:
            async with (
                gate,
                session.patch(f"/phone-number/{number['id']}", data=_body(number)) as answer,
            ):
                answer.raise_for_status()
                await answer.read()

        await asyncio.gather(*(one(n) for n in numbers))


def _aiohttp(stack: Stack, numbers: list[dict[str, Any]]) -> Run:
    began = time.process_time()
    asyncio.run(_aiohttp_loop(stack, numbers, IN_FLIGHT))
    return _figures(stack, len(numbers), time.process_time() - began)


def _sync(stack: Stack, numbers: list[dict[str, Any]]) -> Run:
    began = time.process_time()
    with httpx.Client(base_url=stack.sim_url, headers=HEADERS) as client:
        for number in numbers:
            client.patch(f"/phone-number/{number['id']}", content=_body(number)).raise_for_status()
    return _figures(stack, len(numbers), time.process_time() - began)


def _ours(stack: Stack, numbers: list[dict[str, Any]], options: BatchOptions | None) -> Run:
    with stack.workers(1, THREADS, processes=PROCESSES, PHONEBATCH_RATE_LIMIT="0") as queue:
        began = stack.worker_cpu()  # every process is ready: start-up is not counted
        batch_id = stack.submit(numbers, queue, "asst_ours", options)
        final = stack.wait(batch_id)
        cpu = stack.worker_cpu() - began
    assert final.counts.succeeded == len(numbers), final
    return _figures(stack, len(numbers), cpu)


def _compare(
    stack: Stack, count: int, seed: int, rounds: int, baseline: Callable[[list[dict[str, Any]]], Run],
    name: str, options: BatchOptions | None, goal: float, **faults: Any,
) -> tuple[Run, Run]:  # fmt: skip
    """Baseline and ours in turns, `rounds` times each; the medians are compared, so one
    unlucky run on a busy machine decides nothing."""
    theirs: list[Run] = []
    ours: list[Run] = []
    for round_number in range(1, rounds + 1):
        theirs.append(baseline(stack.reset_simulator(count, seed=seed, **faults)))
        ours.append(_ours(stack, stack.reset_simulator(count, seed=seed, **faults), options))
        t, o = theirs[-1], ours[-1]
        print(
            f"  round {round_number}: {name} {t.rate:7.1f}/s {t.cpu_ms:5.2f} ms CPU/number "
            f"({t.peak} in flight at most)   phonebatch {o.rate:7.1f}/s {o.cpu_ms:5.2f} ms "
            f"CPU/number ({o.peak} at most, {o.requests_per_number:.2f} requests/number)"
        )
    base, mine = _median(theirs), _median(ours)
    label = f"phonebatch worker ({PROCESSES} x {THREADS})"
    print(f"  median {name:<28}: {base.rate:7.1f} numbers/s, {base.cpu_ms:5.2f} ms CPU/number")
    print(f"  median {label:<28}: {mine.rate:7.1f} numbers/s, {mine.cpu_ms:5.2f} ms CPU/number")
    print(f"  ratio ours / {name:<21}: {mine.rate / base.rate:.3f} (goal >= {goal})")
    print(f"  CPU per number ours / theirs     : {mine.cpu_ms / base.cpu_ms:.2f}")
    return base, mine


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rate for r in runs),
        statistics.median(r.cpu_ms for r in runs),
        statistics.median(r.requests_per_number for r in runs),
        max(r.peak for r in runs),
    )


def throughput(stack: Stack, count: int, rounds: int) -> None:
    print(
        f"throughput: {count:,} numbers, {LATENCY_MS} ms latency, {IN_FLIGHT} in flight, "
        f"no rate limit, ours with reads on ({rounds} rounds)"
    )
    _, mine = _compare(
        stack, count, 3, rounds, lambda numbers: _aiohttp(stack, numbers),
        f"aiohttp loop ({IN_FLIGHT})", None, 0.9, latency_ms=LATENCY_MS,
    )  # fmt: skip
    # Each number costs ours `requests_per_number` requests (its reads and the update).
    ideal = IN_FLIGHT / (LATENCY_MS / 1000) / mine.requests_per_number
    print(
        f"  of the ceiling ({IN_FLIGHT} in flight / {LATENCY_MS} ms / "
        f"{mine.requests_per_number:.2f} requests = {ideal:.0f} numbers/s): {mine.rate / ideal:.3f}"
    )


def overhead(stack: Stack, count: int, rounds: int) -> None:
    print(f"overhead: {count:,} numbers, no latency, ours with --no-read ({rounds} rounds)")
    _compare(
        stack, count, 4, rounds, lambda numbers: _sync(stack, numbers), "sequential sync loop",
        BatchOptions(read_first=False), 0.5,
    )  # fmt: skip


SECTIONS = ("throughput", "overhead")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    parser.add_argument("--numbers", type=int, default=2000, help="for throughput")
    parser.add_argument("--overhead-numbers", type=int, default=5000)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    if unknown := [s for s in sections if s not in SECTIONS]:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    with local_stack() as stack:
        # Not counted: the simulator's first requests (imports, connections) are slower.
        asyncio.run(_aiohttp_loop(stack, stack.reset_simulator(500, seed=9), IN_FLIGHT))
        if "throughput" in sections:
            throughput(stack, args.numbers, args.rounds)
        if "overhead" in sections:
            overhead(stack, args.overhead_numbers, args.rounds)


if __name__ == "__main__":
    main()
