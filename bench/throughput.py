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
import os
import statistics
from collections.abc import Callable
from typing import Any

import httpx

from bench.stack import API_KEY, Stack, local_stack
from jobs.producer import BatchOptions
from worker.launcher import default_processes

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


def _ours(stack: Stack, numbers: list[dict[str, Any]], processes: int, threads: int) -> float:
    with stack.workers(1, threads, processes=processes, PHONEBATCH_RATE_LIMIT="0") as queue:
        batch_id = stack.submit(numbers, queue, "asst_ours", BatchOptions(read_first=False))
        final = stack.wait(batch_id)
    assert final.counts.succeeded == len(numbers), final
    return _rate(stack)


ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PROCESSES, THREADS = default_processes(), 8  # what `phonebatch worker` starts by default


def _compare(
    stack: Stack, count: int, seed: int, baseline: Callable[[list[dict[str, Any]]], None],
    name: str, goal: float, **faults: Any,
) -> float:  # fmt: skip
    """Baseline and ours in turns, `ROUNDS` times each; the medians are compared, so one
    unlucky run on a busy machine decides nothing."""
    theirs: list[float] = []
    ours: list[float] = []
    for round_number in range(1, ROUNDS + 1):
        baseline(stack.reset_simulator(count, seed=seed, **faults))
        theirs.append(_rate(stack))
        their_peak = stack.peak_in_flight()
        numbers = stack.reset_simulator(count, seed=seed, **faults)
        ours.append(_ours(stack, numbers, PROCESSES, THREADS))
        print(
            f"  round {round_number}: {name} {theirs[-1]:7.1f}/s ({their_peak} in flight at most)"
            f"   phonebatch {ours[-1]:7.1f}/s ({stack.peak_in_flight()} at most)"
        )
    base, mine = statistics.median(theirs), statistics.median(ours)
    print(f"  median {name:<28}: {base:7.1f}/s")
    print(f"  median phonebatch worker ({PROCESSES} x {THREADS}) : {mine:7.1f}/s")
    print(f"  ratio                              : {mine / base:.3f} (goal >= {goal})")
    return mine


IN_FLIGHT, LATENCY_MS = 32, 50


def throughput(stack: Stack) -> None:
    mine = _compare(
        stack, 2000, 3, lambda numbers: asyncio.run(_raw_async(stack, numbers, IN_FLIGHT)),
        f"raw asyncio loop ({IN_FLIGHT})", 0.95, latency_ms=LATENCY_MS,
    )  # fmt: skip
    # The asyncio loop's own CPU cost swings with the machine (httpcore's pool scans
    # every connection for every request: encode/httpx#3215); the ceiling does not.
    ideal = IN_FLIGHT / (LATENCY_MS / 1000)
    print(
        f"  of the ceiling ({IN_FLIGHT} in flight / {LATENCY_MS} ms = {ideal:.0f}/s): "
        f"{mine / ideal:.3f}"
    )


def overhead(stack: Stack) -> None:
    _compare(stack, 5000, 4, lambda numbers: _raw_sync(stack, numbers), "sequential sync loop", 0.5)


def main() -> None:
    with local_stack() as stack:
        # Not counted: the simulator's first requests (imports, connections) are slower.
        asyncio.run(_raw_async(stack, stack.reset_simulator(500, seed=9), IN_FLIGHT))
        print(
            f"throughput: 2,000 numbers, {LATENCY_MS} ms latency, {IN_FLIGHT} in flight, "
            f"no rate limit ({ROUNDS} rounds)"
        )
        throughput(stack)
        print(f"overhead: 5,000 numbers, no latency ({ROUNDS} rounds)")
        overhead(stack)


if __name__ == "__main__":
    main()
