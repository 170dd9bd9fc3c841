"""Throughput against a raw asyncio loop, and overhead against a plain sequential loop.

    .venv/bin/python -m bench.throughput

1. throughput: 2,000 numbers, the simulator answering after 50 ms, no rate limit,
   32 requests in flight in total. Baseline: an asyncio httpx loop with a semaphore of 32.
   Goal: our rate / baseline >= 0.95.
2. overhead: 5,000 numbers, no latency. Baseline: a sequential sync httpx loop.
   Goal: our rate / baseline >= 0.5.

Both sides send the same PATCHes to the same simulator; rates are requests per second
as the simulator saw them (first to last). Our batches run with `read_first` off, so
both sides send one request per number.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from bench.stack import API_KEY, Stack, local_stack
from jobs.producer import BatchOptions

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


def _rate(stack: Stack) -> float:
    stamps = sorted(r["at"] for r in stack.requests() if r["method"] == "PATCH")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _body(number: dict[str, Any]) -> bytes:
    return json.dumps({"provider": number["provider"], "assistantId": "asst_raw"}).encode()


async def _raw_async(stack: Stack, numbers: list[dict[str, Any]], in_flight: int) -> None:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    gate = asyncio.Semaphore(in_flight)
    async with httpx.AsyncClient(base_url=stack.sim_url, headers=HEADERS, limits=limits) as client:

        async def one(number: dict[str, Any]) -> None:
            async with gate:
                answer = await client.patch(f"/phone-number/{number['id']}", content=_body(number))
                answer.raise_for_status()

        await asyncio.gather(*(one(n) for n in numbers))


def _raw_sync(stack: Stack, numbers: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=stack.sim_url, headers=HEADERS) as client:
        for number in numbers:
            client.patch(f"/phone-number/{number['id']}", content=_body(number)).raise_for_status()


def _ours(stack: Stack, numbers: list[dict[str, Any]], workers: int, threads: int) -> float:
    with stack.workers(workers, threads, PHONEBATCH_RATE_LIMIT="0") as queue:
        batch_id = stack.submit(numbers, queue, "asst_ours", BatchOptions(read_first=False))
        final = stack.wait(batch_id)
    assert final.counts.succeeded == len(numbers), final
    return _rate(stack)


def throughput(stack: Stack) -> None:
    numbers = stack.reset_simulator(2000, seed=3, latency_ms=50)
    started = time.monotonic()
    asyncio.run(_raw_async(stack, numbers, 32))
    baseline = _rate(stack)
    print(f"  raw asyncio httpx loop, 32 in flight : {baseline:7.1f}/s "
          f"({time.monotonic() - started:.1f} s)")  # fmt: skip
    numbers = stack.reset_simulator(2000, seed=3, latency_ms=50)
    ours = _ours(stack, numbers, workers=4, threads=8)
    print(f"  phonebatch, 4 workers x 8 threads    : {ours:7.1f}/s")
    print(f"  ratio                                : {ours / baseline:.3f} (goal >= 0.95)")


def overhead(stack: Stack) -> None:
    numbers = stack.reset_simulator(5000, seed=4)
    _raw_sync(stack, numbers)
    baseline = _rate(stack)
    print(f"  sequential sync httpx loop           : {baseline:7.1f}/s")
    numbers = stack.reset_simulator(5000, seed=4)
    ours = _ours(stack, numbers, workers=4, threads=8)
    print(f"  phonebatch, 4 workers x 8 threads    : {ours:7.1f}/s")
    print(f"  ratio                                : {ours / baseline:.3f} (goal >= 0.5)")


def main() -> None:
    with local_stack() as stack:
        print("throughput: 2,000 numbers, 50 ms latency, 32 in flight, no rate limit")
        throughput(stack)
        print("overhead: 5,000 numbers, no latency")
        overhead(stack)


if __name__ == "__main__":
    main()
